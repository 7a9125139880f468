//! Both lease stores keep the same promises: conditional claims, checkpoints
//! only by the holder, releases visible to others. SQLite on a temp file;
//! DynamoDB on moto (started by scripts/services.sh).

use pitwall_lease::dynamodb::DynamoLeases;
use pitwall_lease::sqlite::SqliteLeases;
use pitwall_lease::{Checkpoint, Lease, LeaseStore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn keeps_the_lease_protocol(s: &dyn LeaseStore) -> TestResult {
    s.prepare().await?;
    s.prepare().await?; // idempotent
    assert!(
        s.create(&Lease::new("shard-1", vec!["shard-0".into()]))
            .await?
    );
    assert!(
        !s.create(&Lease::new("shard-1", vec![])).await?,
        "exists already"
    );
    assert!(s.create(&Lease::new("shard-0", vec![])).await?);
    // Two workers saw counter 0; only one wins.
    assert_eq!(s.claim("shard-1", "a", 0, true).await?, Some(1));
    assert_eq!(s.claim("shard-1", "b", 0, true).await?, None);
    // a renews; b, having seen counter 2 unchanged for the failover time, takes it.
    assert_eq!(s.claim("shard-1", "a", 1, false).await?, Some(2));
    assert_eq!(s.claim("shard-1", "b", 2, true).await?, Some(3));
    // a lost it: its checkpoint is refused, b's is kept.
    let cp = Checkpoint::Sequence {
        sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
        sub_sequence: 2,
    };
    assert!(!s.checkpoint("shard-1", "a", &cp).await?);
    assert!(s.checkpoint("shard-1", "b", &cp).await?);
    assert!(!s.release("shard-1", "a").await?);
    assert!(s.release("shard-1", "b").await?);
    let leases = s.list().await?;
    assert_eq!(
        leases
            .iter()
            .map(|l| l.shard_id.as_str())
            .collect::<Vec<_>>(),
        ["shard-0", "shard-1"]
    );
    let l = &leases[1];
    assert_eq!(
        (l.owner.as_deref(), l.counter, l.owner_switches),
        (None, 4, 2)
    );
    assert_eq!(l.checkpoint, cp);
    assert_eq!(l.parents, ["shard-0"]);
    // SHARD_END is a checkpoint like any other.
    assert_eq!(s.claim("shard-0", "a", 0, true).await?, Some(1));
    // A renewal carries the shard's throughput; a stale counter writes nothing.
    assert_eq!(s.renew("shard-0", "a", 1, 12_345).await?, Some(2));
    assert_eq!(s.renew("shard-0", "a", 0, 99).await?, None);
    // A renewal whose write had landed (its answer came too late and the
    // call was retried) is still a renewal, not a lease lost: KCL's reading.
    assert_eq!(s.renew("shard-0", "a", 1, 99).await?, Some(2));
    assert_eq!(s.list().await?[0].throughput, 12_345);
    assert_eq!(s.list().await?[1].throughput, 0, "never reported: unknown");
    // A hand-over: b asks (once; not its own, not a stale counter), a's
    // renewals still succeed, a hands it over, b owns it.
    assert!(
        !s.request_handoff("shard-0", "b", 1).await?,
        "stale counter"
    );
    assert!(
        !s.request_handoff("shard-0", "a", 2).await?,
        "its own lease"
    );
    assert!(s.request_handoff("shard-0", "b", 2).await?);
    assert!(
        !s.request_handoff("shard-0", "c", 2).await?,
        "b asked first"
    );
    assert_eq!(s.list().await?[0].pending_owner.as_deref(), Some("b"));
    assert_eq!(s.renew("shard-0", "a", 2, 12_345).await?, Some(3));
    assert!(!s.hand_over("shard-0", "a", "c").await?, "c never asked");
    assert!(s.hand_over("shard-0", "a", "b").await?);
    let l = &s.list().await?[0];
    assert_eq!(
        (l.owner.as_deref(), l.pending_owner.as_deref(), l.counter),
        (Some("b"), None, 4)
    );
    assert!(!s.checkpoint("shard-0", "a", &Checkpoint::ShardEnd).await?);
    assert!(s.checkpoint("shard-0", "b", &Checkpoint::ShardEnd).await?);
    assert!(s.list().await?[0].finished());
    // A take on expiry ends a hand-over nobody honoured.
    assert_eq!(s.claim("shard-1", "a", 4, true).await?, Some(5));
    assert!(s.request_handoff("shard-1", "b", 5).await?);
    assert_eq!(s.claim("shard-1", "c", 5, true).await?, Some(6));
    assert_eq!(s.list().await?[1].pending_owner, None);
    Ok(())
}

#[test]
fn an_older_sqlite_table_gains_the_newer_columns() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("leases.db");
    let old = rusqlite::Connection::open(&path)?;
    old.execute_batch(
        "CREATE TABLE leases (shard_id TEXT PRIMARY KEY, owner TEXT, counter INTEGER NOT NULL,
           checkpoint TEXT NOT NULL, parents TEXT NOT NULL, owner_switches INTEGER NOT NULL);
         INSERT INTO leases VALUES ('shard-0', 'a', 3, 'START', '', 0);",
    )?;
    drop(old);
    let store = SqliteLeases::open(&path)?;
    rt().block_on(async {
        store.prepare().await?;
        let l = store.list().await?;
        assert_eq!(
            (l[0].counter, l[0].throughput, l[0].pending_owner.as_deref()),
            (3, 0, None)
        );
        assert_eq!(store.renew("shard-0", "a", 3, 7).await?, Some(4));
        assert_eq!(store.list().await?[0].throughput, 7);
        Ok(())
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn sqlite_keeps_the_lease_protocol() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = SqliteLeases::open(&dir.path().join("leases.db"))?;
    rt().block_on(keeps_the_lease_protocol(&store))
}

#[test]
fn an_unreadable_sqlite_checkpoint_leaves_its_shard_alone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("leases.db");
    let store = SqliteLeases::open(&path)?;
    let rt = rt();
    rt.block_on(async {
        store.prepare().await?;
        store.create(&Lease::new("shard-1", vec![])).await?;
        store.create(&Lease::new("shard-2", vec![])).await
    })?;
    rusqlite::Connection::open(&path)?.execute(
        "UPDATE leases SET checkpoint = 'garbage' WHERE shard_id = 'shard-1'",
        [],
    )?;
    let listed: Vec<String> = rt
        .block_on(store.list())?
        .into_iter()
        .map(|l| l.shard_id)
        .collect();
    assert_eq!(listed, ["shard-2"]);
    assert!(
        !rt.block_on(store.create(&Lease::new("shard-1", vec![])))?,
        "nor is it created again from the start"
    );
    Ok(())
}

#[test]
fn dynamodb_keeps_the_lease_protocol() -> TestResult {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        if std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() {
            panic!("AWS_ENDPOINT_URL is not set: start the services with scripts/services.sh");
        }
        eprintln!("skipped: no moto server (run scripts/test.sh)");
        return Ok(());
    }
    rt().block_on(async {
        let store = DynamoLeases::from_env(&format!("pitwall-leases-{}", std::process::id())).await;
        keeps_the_lease_protocol(&store).await
    })
}
