//! `pitwall doctor`'s AWS checks: whom the credentials belong to, the
//! stream's shards, the lease table. Each is one read-only call.

use super::{Found, Status};

/// Whose credentials the default chain resolves (IRSA in a pod, a profile,
/// environment variables): STS GetCallerIdentity.
pub async fn identity() -> Found {
    let conf = aws_config::load_from_env().await;
    let sts = aws_sdk_sts::Client::new(&conf);
    let me = sts.get_caller_identity().send().await.map_err(|e| {
        (
            format!(
                "the credentials did not resolve or were refused: {}",
                aws_sdk_sts::error::DisplayErrorContext(e)
            ),
            "give the pod its role (serviceAccount.annotations: eks.amazonaws.com/role-arn), or \
             set AWS_PROFILE / AWS_ACCESS_KEY_ID, and AWS_REGION"
                .to_string(),
        )
    })?;
    let region = conf
        .region()
        .map_or("no region".to_string(), |r| r.to_string());
    Ok((
        Status::Ok,
        format!(
            "{} (account {}, {region})",
            me.arn().unwrap_or("an unnamed identity"),
            me.account().unwrap_or("?")
        ),
    ))
}

/// The stream exists and the role may list its shards.
pub async fn stream(name: &str) -> Found {
    let kinesis = pitwall_ingest::kinesis::Kinesis::from_env(name).await;
    let shards = kinesis.list_shards().await.map_err(|e| {
        (
            e.to_string(),
            "check the stream's name and region, and that the role may kinesis:ListShards, \
             GetShardIterator and GetRecords (SubscribeToShard for enhanced fan-out)"
                .to_string(),
        )
    })?;
    let open = shards.iter().filter(|s| !s.closed).count();
    Ok((Status::Ok, format!("{} shards ({open} open)", shards.len())))
}

/// The lease table exists (or `ingest run` creates it at start).
pub async fn leases(spec: &str) -> Found {
    match spec.split_once(':') {
        Some(("dynamodb", table)) if !table.is_empty() => {
            let store = pitwall_lease::dynamodb::DynamoLeases::from_env(table).await;
            let fix = "check the table's name and region, and that the role may dynamodb:DescribeTable, \
                       GetItem, PutItem, UpdateItem, Scan (and CreateTable if the service is to create it)";
            match store
                .describe()
                .await
                .map_err(|e| (e.to_string(), fix.to_string()))?
            {
                Some((status, items)) if status == "ACTIVE" => {
                    Ok((Status::Ok, format!("ACTIVE, {items} leases")))
                }
                Some((status, _)) => Ok((Status::Warn, format!("{status}: not ready yet"))),
                None => Ok((
                    Status::Warn,
                    "absent: the service creates it at start, which needs dynamodb:CreateTable"
                        .into(),
                )),
            }
        }
        Some(("sqlite", path)) if !path.is_empty() => {
            let dir = std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if dir.is_dir() {
                Ok((
                    Status::Ok,
                    format!("a SQLite file in {} (one process only)", dir.display()),
                ))
            } else {
                Err((
                    format!("{} is not a directory", dir.display()),
                    "give a path in an existing, writable directory".into(),
                ))
            }
        }
        _ => Err((
            format!("{spec:?} is not a lease store"),
            "use sqlite:PATH or dynamodb:TABLE".into(),
        )),
    }
}
