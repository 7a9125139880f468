//! Records of a real run, framed for Glue (plain and zlib) and Confluent,
//! decoded by fastavro (scripts/test.sh installs it): the bytes are what
//! other clients expect.

mod util;

use std::io::Write;
use std::process::Command;

use pitwall_contract::schemas::{MEMBER_SCORE_V1, member_score_v1};
use pitwall_contract::wire;
use pitwall_publish::record::{Encoder, member_batches, read_run_info};
use pitwall_publish::registry::{FileRegistry, Outcome, check_and_register};
use util::TestResult;

fn have_fastavro() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import fastavro"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() {
        panic!("python3 with fastavro is required under scripts/test.sh");
    }
    ok
}

#[test]
fn fastavro_decodes_glue_and_confluent_frames_of_a_real_run() -> TestResult {
    if !have_fastavro() {
        eprintln!("skipped: python3 -c 'import fastavro' failed (run scripts/test.sh)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (run_dir, run) = util::scored_run(dir.path(), 60, 4)?;
    let info = read_run_info(&run_dir)?;
    assert_eq!(info.run_id, run.run_id);
    assert_eq!(info.eligible_rows, run.members.eligible as u64);
    let batches = member_batches(&run_dir)?.collect::<Result<Vec<_>, _>>()?;
    let records: Vec<_> = batches
        .iter()
        .flat_map(|b| b.records(&info.run_id))
        .collect();
    assert_eq!(records.len(), run.members.eligible);
    assert!(!records.is_empty());

    let reg = FileRegistry::new(dir.path().join("registry"));
    let Outcome::Registered(v1) = check_and_register(
        &reg,
        "driving-score.member.v1-value",
        MEMBER_SCORE_V1,
        None,
        true,
    )?
    else {
        return Err("not registered".into());
    };
    let (uuid, id) = (
        v1.version_id.ok_or("no uuid")?,
        v1.schema_id.ok_or("no id")?,
    );
    let schema = member_score_v1()?;
    let encoder = Encoder::new(&schema)?;
    let mut file = std::fs::File::create(dir.path().join("frames.bin"))?;
    for r in &records {
        let mut datum = Vec::new();
        encoder.encode(r, &mut datum)?;
        for framed in [
            wire::glue(uuid, &datum, false),
            wire::glue(uuid, &datum, true),
            wire::confluent(id, &datum),
        ] {
            file.write_all(&(framed.len() as u32).to_be_bytes())?;
            file.write_all(&framed)?;
        }
    }
    drop(file);
    std::fs::write(dir.path().join("schema.avsc"), MEMBER_SCORE_V1)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/decode_with_fastavro.py");
    let out = Command::new("python3")
        .args([
            script,
            &dir.path().join("frames.bin").display().to_string(),
            &dir.path().join("schema.avsc").display().to_string(),
        ])
        .output()?;
    assert!(
        out.status.success(),
        "fastavro failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: Vec<serde_json::Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(decoded.len(), records.len() * 3);

    for (r, three) in records.iter().zip(decoded.chunks(3)) {
        assert_eq!(three[0]["header"]["format"], "glue");
        assert_eq!(three[0]["header"]["compression"], 0);
        assert_eq!(three[1]["header"]["compression"], 5);
        assert_eq!(three[0]["header"]["version_id"], uuid.to_string());
        assert_eq!(
            three[2]["header"],
            serde_json::json!({"format": "confluent", "schema_id": id})
        );
        // All three carry the same record, equal to what we encoded.
        assert_eq!(three[0]["value"], three[1]["value"]);
        assert_eq!(three[0]["value"], three[2]["value"]);
        let v = &three[0]["value"];
        assert_eq!(v["member_id"], r.member_id);
        assert_eq!(v["run_id"], info.run_id.as_str());
        // fastavro's reading equals the record we encoded, field for field.
        let mut expected = serde_json::to_value(r)?;
        // fastavro renders timestamp-millis as datetimes; compare those as epoch ms.
        expected["as_of"] = serde_json::Value::Null;
        let mut got = v.clone();
        got["as_of"] = serde_json::Value::Null;
        for rr in expected["recent_rentals"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            rr["end_at"] = serde_json::Value::Null;
        }
        for rr in got["recent_rentals"].as_array_mut().into_iter().flatten() {
            rr["end_at"] = serde_json::Value::Null;
        }
        assert_eq!(got, expected);
        assert!(r.recent_rentals.len() <= 10);
    }
    Ok(())
}
