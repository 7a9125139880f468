//! What every registry backend must agree on: when a schema is "already
//! registered" (layout aside, the whole schema: defaults, aliases, doc,
//! field order), and which versions each compatibility mode compares with
//! (the latest only, or every one for the `*_ALL` modes).

use pitwall_contract::Compatibility;
use pitwall_publish::registry::{Outcome, Registry, RegistryError, check_and_register};

use super::TestResult;

const A: &str = r#"{"type":"record","name":"r","fields":[{"name":"a","type":"string"}]}"#;
const AB_DEFAULT: &str = r#"{"type":"record","name":"r","fields":[{"name":"a","type":"string"},{"name":"b","type":"string","default":"x"}]}"#;
const AB: &str = r#"{"type":"record","name":"r","fields":[{"name":"a","type":"string"},{"name":"b","type":"string"}]}"#;

fn registered(
    o: Outcome,
) -> Result<pitwall_publish::registry::Registered, Box<dyn std::error::Error>> {
    match o {
        Outcome::Registered(r) => Ok(r),
        other => Err(format!("expected a new version, got {other:?}").into()),
    }
}

/// A history set up under NONE, then `new` checked under `mode`.
fn check_after(
    reg: &dyn Registry,
    subject: &str,
    history: &[&str],
    new: &str,
    mode: Compatibility,
) -> Result<Result<Outcome, RegistryError>, Box<dyn std::error::Error>> {
    for h in history {
        check_and_register(reg, subject, h, Some(Compatibility::None), true)?;
    }
    Ok(check_and_register(reg, subject, new, Some(mode), true))
}

pub fn identity_and_history(reg: &dyn Registry, tag: &str) -> TestResult {
    // The issue's case: a default removed is a new schema, checked, and
    // under BACKWARD_ALL refused against the version without `b`.
    let s = format!("{tag}-identity-backward-all");
    let v1 = registered(check_and_register(
        reg,
        &s,
        A,
        Some(Compatibility::BackwardAll),
        true,
    )?)?;
    let v2 = registered(check_and_register(reg, &s, AB_DEFAULT, None, true)?)?;
    assert_eq!((v1.version, v2.version), (1, 2));
    let spaced = "{ \"type\": \"record\",\n  \"name\": \"r\", \"fields\": [\n {\"type\": \"string\", \"name\": \"a\"},\n {\"name\": \"b\", \"default\": \"x\", \"type\": \"string\"} ] }";
    assert_eq!(
        check_and_register(reg, &s, spaced, None, true)?,
        Outcome::AlreadyRegistered(v2.clone()),
        "a copy differing in layout only is the registered version"
    );
    let err = check_and_register(reg, &s, AB, None, true)
        .err()
        .ok_or("a default removed must be checked, and BACKWARD_ALL refuses it")?;
    assert!(matches!(err, RegistryError::Incompatible { .. }), "{err}");
    assert!(err.to_string().contains("version 1"), "{err}");
    assert_eq!(reg.versions(&s)?.len(), 2);

    // Under BACKWARD only the latest counts: the same schema is version 3.
    let s = format!("{tag}-identity-backward");
    check_and_register(reg, &s, A, Some(Compatibility::Backward), true)?;
    let v2 = registered(check_and_register(reg, &s, AB_DEFAULT, None, true)?)?;
    let v3 = registered(check_and_register(reg, &s, AB, None, true)?)?;
    assert_eq!(v3.version, 3);
    assert!(
        v3.version_id != v2.version_id || v3.schema_id != v2.schema_id,
        "{v2:?} {v3:?}"
    );
    // A doc or an alias alone is a new version too (it changes nothing on the wire).
    let with_doc = AB.replace(r#""name":"r","#, r#""name":"r","doc":"the r record","#);
    assert_eq!(
        registered(check_and_register(reg, &s, &with_doc, None, true)?)?.version,
        4
    );

    // Each mode's history rule: the oldest version conflicts, the latest does not.
    let cases = [
        // Backward: the new schema reads data of v1 (no b) only with b's default.
        (
            Compatibility::Backward,
            Compatibility::BackwardAll,
            [A, AB_DEFAULT],
            AB,
        ),
        // Forward: v1 (b required) cannot read data of a schema without b.
        (
            Compatibility::Forward,
            Compatibility::ForwardAll,
            [AB, AB_DEFAULT],
            A,
        ),
        (
            Compatibility::Full,
            Compatibility::FullAll,
            [AB, AB_DEFAULT],
            A,
        ),
    ];
    for (latest_only, every, history, new) in cases {
        let s = format!("{tag}-history-{latest_only:?}").to_lowercase();
        let ok = check_after(reg, &s, &history, new, latest_only)?;
        assert!(
            matches!(ok, Ok(Outcome::Registered(_))),
            "{latest_only:?}: {ok:?}"
        );
        let s = format!("{tag}-history-{every:?}").to_lowercase();
        let refused = check_after(reg, &s, &history, new, every)?;
        assert!(
            matches!(refused, Err(RegistryError::Incompatible { .. })),
            "{every:?}: {refused:?}"
        );
    }
    Ok(())
}
