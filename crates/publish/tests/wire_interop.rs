//! Records of a real run, framed for Glue (plain and zlib) and Confluent,
//! decoded by fastavro (scripts/test.sh installs it): the bytes are what
//! other clients expect.

use std::io::Write;
use std::process::Command;

use apache_avro::types::Value;
use pitwall_contract::schemas::{MEMBER_SCORE_V1, member_score_v1};
use pitwall_contract::wire;
use pitwall_publish::record::{encode, read_run};
use pitwall_publish::registry::{FileRegistry, Outcome, check_and_register};

type TestResult = Result<(), Box<dyn std::error::Error>>;

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

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        _ => None,
    }
}

#[test]
fn fastavro_decodes_glue_and_confluent_frames_of_a_real_run() -> TestResult {
    if !have_fastavro() {
        eprintln!("skipped: python3 -c 'import fastavro' failed (run scripts/test.sh)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let end = 1_780_000_000_000;
    pitwall_fleetgen::generate(
        &dir.path().join("fleet"),
        &pitwall_fleetgen::FleetConfig::new(60, 4, end),
    )?;
    let mut cfg = pitwall_score_job::JobConfig::new(
        dir.path()
            .join("fleet/rentals.parquet")
            .display()
            .to_string(),
        dir.path().join("fleet/telemetry").display().to_string(),
        end,
        dir.path().join("run"),
    );
    cfg.threads = 2;
    let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
    let records = read_run(&dir.path().join("run"))?;
    assert_eq!(records.run_id, run.run_id);
    assert_eq!(records.records.len(), run.members.eligible);
    assert!(!records.records.is_empty());

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
    let mut file = std::fs::File::create(dir.path().join("frames.bin"))?;
    for r in &records.records {
        let datum = encode(&schema, r)?;
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
    assert_eq!(decoded.len(), records.records.len() * 3);

    for (r, three) in records.records.iter().zip(decoded.chunks(3)) {
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
        assert_eq!(v["member_id"], r.member_id.as_str());
        assert_eq!(v["run_id"], records.run_id.as_str());
        let Some(Value::Union(_, score)) = field(&r.value, "score") else {
            return Err("no score".into());
        };
        match score.as_ref() {
            Value::Double(s) => assert_eq!(v["score"].as_f64(), Some(*s)),
            _ => assert!(v["score"].is_null()),
        }
        let Some(Value::Array(recent)) = field(&r.value, "recent_rentals") else {
            return Err("no rentals".into());
        };
        assert_eq!(
            v["recent_rentals"].as_array().map(Vec::len),
            Some(recent.len())
        );
        assert!(recent.len() <= 10);
    }
    Ok(())
}
