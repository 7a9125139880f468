//! What the state remembers of publication to a topic: for each attempt an
//! intent written create-if-absent before anything is sent, and an outcome
//! written after; and the view the topic holds (every member's record
//! digest as last published) after each successful one. Digests, not
//! records: a publication then reads the snapshot's flat columns and the
//! rentals of only the members it sends, not every member's record twice.
//!
//! ```text
//! STATE/published/<topic>/000000000007.json           intent: what publication 7 sends, from which run
//! STATE/published/<topic>/000000000007.changes.parquet the records it sends
//! STATE/published/<topic>/000000000007.view.parquet    the topic's record digests once it committed
//! STATE/published/<topic>/000000000007.outcome.json   committed | aborted | resolved after a crash
//! ```
//!
//! An intent without an outcome is a publication whose process died: the
//! next publisher resolves it from the topic before doing anything else.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{FixedSizeBinaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use pitwall_lake::{Created, Location, ParquetOptions};
use serde::{Deserialize, Serialize};

use crate::deltas::Snapshot;
use crate::snapshot::{self, Digest, MemberRecord, digest};
use crate::{State, StateError};

/// What the topic holds: each published member's record digest.
pub type View = HashMap<String, Digest>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub pseq: u64,
    pub topic: String,
    /// The committed run whose snapshot is published.
    pub state_seq: u64,
    pub run_id: String,
    /// The publication whose view this one is a difference from (None: the first).
    pub base_pseq: Option<u64>,
    /// Sent as a record header, so the records of this publication can be
    /// told apart on the topic.
    pub publication_id: String,
    pub records: u64,
    /// Partition → the end offset before anything was sent: the records of
    /// this publication can only lie after it.
    pub start_offsets: Vec<(i32, i64)>,
    pub transactional: bool,
    pub transactional_id: String,
    pub started_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The broker committed; the view is the intent's.
    Committed { at: String, millis: u64 },
    /// Nothing of it is on the topic: the next publication sends it again.
    Aborted { at: String, reason: String },
    /// Found after a crash: `found` of the intent's records are on the topic
    /// (all of them, none, or — without transactions — some), and the view
    /// file says what the topic holds.
    Resolved {
        at: String,
        found: u64,
        view: Option<String>,
    },
}

/// The publications of one topic in a state.
pub struct Publications<'a> {
    loc: Location,
    url: String,
    state: &'a State,
}

fn topic_dir(topic: &str) -> String {
    let safe: String = topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("published/{safe}")
}

impl State {
    pub fn publications(&self, topic: &str) -> Publications<'_> {
        let rel = topic_dir(topic);
        Publications {
            loc: self.location().join(&rel),
            url: format!("{}/{rel}", self.url()),
            state: self,
        }
    }
}

impl Publications<'_> {
    fn name(pseq: u64, what: &str) -> String {
        format!("{pseq:012}.{what}")
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let Some(bytes) = self.loc.get(name)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: format!("{}/{name}", self.url),
                problem: e.to_string(),
            })
    }

    /// The newest publication attempt and its outcome, if any.
    pub fn last(&self) -> Result<Option<(Intent, Option<Outcome>)>, StateError> {
        let newest = self
            .loc
            .names("")?
            .iter()
            .filter_map(|n| n.strip_suffix(".json")?.parse::<u64>().ok())
            .max();
        let Some(pseq) = newest else { return Ok(None) };
        let intent: Intent =
            self.json(&Self::name(pseq, "json"))?
                .ok_or_else(|| StateError::Corrupt {
                    path: format!("{}/{}", self.url, Self::name(pseq, "json")),
                    problem: "the intent is missing".into(),
                })?;
        let outcome = self.json(&Self::name(pseq, "outcome.json"))?;
        Ok(Some((intent, outcome)))
    }

    /// The publication the topic's view comes from, and that view: the
    /// newest one that committed (or was found on the topic after a crash).
    pub fn view(&self) -> Result<(Option<u64>, View), StateError> {
        self.view_of(self.last()?.map(|(i, _)| i.pseq))
    }

    fn records(&self, name: &str) -> Result<Vec<MemberRecord>, StateError> {
        let batches = self.batches(name)?;
        snapshot::from_batches(&batches)
    }

    /// A view file: digests, or (written before views were digests) records.
    fn view_file(&self, name: &str) -> Result<View, StateError> {
        let batches = self.batches(name)?;
        if batches.iter().any(|b| b.column_by_name("digest").is_none()) {
            return Ok(view_of_records(&snapshot::from_batches(&batches)?));
        }
        let bad = |what: &str| StateError::Parquet {
            path: format!("{}/{name}", self.url),
            problem: format!("its {what} column is not what pitwall writes"),
        };
        let mut view = View::new();
        for b in &batches {
            let ids = b
                .column_by_name("member_id")
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| bad("member_id"))?;
            let digests = b
                .column_by_name("digest")
                .and_then(|c| c.as_fixed_size_binary_opt())
                .filter(|d| d.value_length() == 16)
                .ok_or_else(|| bad("digest"))?;
            for i in 0..b.num_rows() {
                let d: Digest = digests.value(i).try_into().map_err(|_| bad("digest"))?;
                view.insert(ids.value(i).to_string(), d);
            }
        }
        Ok(view)
    }

    fn put_view(&self, name: &str, view: &View) -> Result<String, StateError> {
        let mut rows: Vec<(&String, &Digest)> = view.iter().collect();
        rows.sort_unstable();
        let bad = |e: &dyn std::fmt::Display| StateError::Table {
            what: "publication view".into(),
            problem: e.to_string(),
        };
        let ids = StringArray::from_iter_values(rows.iter().map(|r| r.0));
        let digests = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
            rows.iter().map(|r| Some(r.1)),
            16,
        )
        .map_err(|e| bad(&e))?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("member_id", DataType::Utf8, false),
            Field::new("digest", DataType::FixedSizeBinary(16), false),
        ]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(digests)])
            .map_err(|e| bad(&e))?;
        let bytes =
            pitwall_lake::parquet_bytes(batch.schema(), &[batch], &ParquetOptions::default())?;
        self.loc.put(name, Bytes::from(bytes))?;
        Ok(name.to_string())
    }

    fn batches(&self, name: &str) -> Result<Vec<RecordBatch>, StateError> {
        let path = format!("{}/{name}", self.url);
        let bytes = self
            .loc
            .get(name)?
            .ok_or(StateError::MissingFile { path: path.clone() })?;
        let bad = |e: &dyn std::fmt::Display| StateError::Parquet {
            path: path.clone(),
            problem: e.to_string(),
        };
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| bad(&e))?;
        reader.collect::<Result<Vec<_>, _>>().map_err(|e| bad(&e))
    }

    /// The records an intent sends.
    pub fn changes(&self, intent: &Intent) -> Result<Vec<MemberRecord>, StateError> {
        self.records(&Self::name(intent.pseq, "changes.parquet"))
    }

    /// A view as an earlier pitwall wrote it (records), for the test that
    /// such a view is still read.
    #[cfg(test)]
    fn put_records(
        &self,
        name: &str,
        records: &[MemberRecord],
        model: &str,
        as_of: i64,
    ) -> Result<String, StateError> {
        let batch = snapshot::to_batch(records, model, as_of)?;
        let bytes =
            pitwall_lake::parquet_bytes(batch.schema(), &[batch], &ParquetOptions::default())?;
        self.loc.put(name, Bytes::from(bytes))?;
        Ok(name.to_string())
    }

    /// Writes the changes and the view they lead to, then the intent,
    /// create-if-absent: a second publisher of the same pseq fails here,
    /// before sending anything.
    pub fn begin(
        &self,
        intent: &Intent,
        changes: &[MemberRecord],
        view: &View,
    ) -> Result<(), StateError> {
        self.write_changes(intent.pseq, &mut std::iter::once(Ok(changes.to_vec())))?;
        self.begin_written(intent, view)
    }

    /// Writes the records a publication sends, given a chunk at a time
    /// (a first publication sends every member).
    pub fn write_changes(
        &self,
        pseq: u64,
        chunks: &mut dyn Iterator<Item = Result<Vec<MemberRecord>, StateError>>,
    ) -> Result<(), StateError> {
        let (model, as_of) = self
            .state
            .head()
            .map_or((String::new(), 0), |h| (h.model.clone(), h.as_of_ms));
        let schema = snapshot::to_batch(&[], &model, as_of)?.schema();
        let bad = |e: parquet::errors::ParquetError| StateError::Table {
            what: "publication changes".into(),
            problem: e.to_string(),
        };
        let props = ParquetOptions::default().properties();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(bad)?;
        for chunk in chunks {
            w.write(&snapshot::to_batch(&chunk?, &model, as_of)?)
                .map_err(bad)?;
        }
        let bytes = w.into_inner().map_err(bad)?;
        self.loc
            .put(&Self::name(pseq, "changes.parquet"), Bytes::from(bytes))?;
        Ok(())
    }

    /// After [`write_changes`](Self::write_changes): writes the view the
    /// publication leads to, then the intent, create-if-absent.
    pub fn begin_written(&self, intent: &Intent, view: &View) -> Result<(), StateError> {
        self.put_view(&Self::name(intent.pseq, "view.parquet"), view)?;
        let bytes = serde_json::to_vec_pretty(intent).map_err(|e| StateError::Table {
            what: "publication intent".into(),
            problem: e.to_string(),
        })?;
        let name = Self::name(intent.pseq, "json");
        match self.loc.put_if_absent(&name, Bytes::from(bytes))? {
            Created::Yes => Ok(()),
            Created::AlreadyExists => Err(StateError::PublicationRace {
                path: format!("{}/{name}", self.url),
            }),
        }
    }

    /// Records how a publication ended; the first outcome written stands.
    pub fn finish(&self, pseq: u64, outcome: &Outcome) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(outcome).map_err(|e| StateError::Table {
            what: "publication outcome".into(),
            problem: e.to_string(),
        })?;
        self.loc
            .put_if_absent(&Self::name(pseq, "outcome.json"), Bytes::from(bytes))?;
        Ok(())
    }

    /// After a crash: the view once the records found on the topic are counted in.
    pub fn resolve(
        &self,
        intent: &Intent,
        found: &std::collections::HashSet<String>,
    ) -> Result<Outcome, StateError> {
        let at = crate::ops::rfc3339(crate::ops::now_ms());
        if found.len() as u64 == intent.records {
            return Ok(Outcome::Resolved {
                at,
                found: intent.records,
                view: Some(Self::name(intent.pseq, "view.parquet")),
            });
        }
        if found.is_empty() {
            return Ok(Outcome::Resolved {
                at,
                found: 0,
                view: None,
            });
        }
        // Some landed (no transaction): the view is the base with those.
        let (_, base) = self.view_of(intent.base_pseq)?;
        let landed: Vec<MemberRecord> = self
            .changes(intent)?
            .into_iter()
            .filter(|m| found.contains(&m.member_id))
            .collect();
        let view = overlay(&base, &landed);
        let name = self.put_view(&Self::name(intent.pseq, "resolved-view.parquet"), &view)?;
        Ok(Outcome::Resolved {
            at,
            found: found.len() as u64,
            view: Some(name),
        })
    }

    /// The view as of publication `pseq`: its own when it landed, else that of its base.
    fn view_of(&self, pseq: Option<u64>) -> Result<(Option<u64>, View), StateError> {
        let Some(pseq) = pseq else {
            return Ok((None, View::new()));
        };
        let outcome: Option<Outcome> = self.json(&Self::name(pseq, "outcome.json"))?;
        let file = match outcome {
            Some(Outcome::Committed { .. }) => Some(Self::name(pseq, "view.parquet")),
            Some(Outcome::Resolved { view, .. }) => view,
            _ => None,
        };
        match file {
            Some(f) => Ok((Some(pseq), self.view_file(&f)?)),
            None => {
                let intent: Option<Intent> = self.json(&Self::name(pseq, "json"))?;
                self.view_of(intent.and_then(|i| i.base_pseq))
            }
        }
    }
}

/// The eligible members whose record differs from the view, or is new to
/// it (what a publication sends), with their digests, by member_id. Read
/// from the snapshot's digest column; a file that keeps none (written
/// before state format 3) has its members decoded to compute them.
pub fn changed(snapshot: &Snapshot, view: &View) -> Result<Vec<(String, Digest)>, StateError> {
    let mut out = Vec::new();
    let mut unsure = HashSet::new();
    snapshot.for_each(|m| {
        if !m.eligible {
            return;
        }
        match m.digest.and_then(|d| Digest::try_from(d).ok()) {
            Some(d) if view.get(m.member_id) == Some(&d) => {}
            Some(d) => out.push((m.member_id.to_string(), d)),
            None => {
                unsure.insert(m.member_id.to_string());
            }
        }
    })?;
    for k in snapshot.kept_of(&unsure)? {
        let d = digest(&k.record);
        if view.get(&k.record.member_id) != Some(&d) {
            out.push((k.record.member_id, d));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The records of `ids` (sorted), from the snapshot.
pub fn records_of(snapshot: &Snapshot, ids: &[String]) -> Result<Vec<MemberRecord>, StateError> {
    let wanted: HashSet<String> = ids.iter().cloned().collect();
    Ok(snapshot
        .kept_of(&wanted)?
        .into_iter()
        .map(|k| k.record)
        .collect())
}

/// What a publication sends, as records: [`changed`] decoded.
pub fn changes(snapshot: &Snapshot, view: &View) -> Result<Vec<MemberRecord>, StateError> {
    let ids: Vec<String> = changed(snapshot, view)?.into_iter().map(|c| c.0).collect();
    records_of(snapshot, &ids)
}

/// The view after members of `changed` (id, digest) land on `view`.
pub fn overlay_digests(view: &View, changed: &[(String, Digest)]) -> View {
    let mut out = view.clone();
    out.extend(changed.iter().cloned());
    out
}

/// [`changes`] of records in hand.
pub fn changed_records(now: &[MemberRecord], view: &View) -> Vec<MemberRecord> {
    now.iter()
        .filter(|m| m.score.eligible && view.get(&m.member_id) != Some(&digest(m)))
        .cloned()
        .collect()
}

/// The view of a topic that holds `records`.
pub fn view_of_records(records: &[MemberRecord]) -> View {
    records
        .iter()
        .map(|m| (m.member_id.clone(), digest(m)))
        .collect()
}

/// The view after `changes` land on `view`.
pub fn overlay(view: &View, changes: &[MemberRecord]) -> View {
    let mut out = view.clone();
    out.extend(changes.iter().map(|m| (m.member_id.clone(), digest(m))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_score::member::{FactorRates, MemberScore, MemberStatus};

    fn record(id: &str, score: f64, eligible: bool) -> MemberRecord {
        MemberRecord {
            member_id: id.into(),
            score: MemberScore {
                eligible,
                status: MemberStatus::Scored,
                score: Some(score),
                grade: None,
                rentals_used: Vec::new(),
                rentals_12m: 1,
                distance_km_total: 150.0,
                rates: FactorRates::default(),
            },
            recent: Vec::new(),
        }
    }

    #[test]
    fn only_eligible_members_whose_record_differs_are_sent() {
        let view = view_of_records(&[record("a", 70.0, true), record("b", 80.0, true)]);
        let now = vec![
            record("a", 70.0, true),
            record("b", 81.0, true),
            record("c", 60.0, true),
            record("d", 50.0, false),
        ];
        let sent: Vec<String> = changed_records(&now, &view)
            .into_iter()
            .map(|m| m.member_id)
            .collect();
        assert_eq!(sent, vec!["b", "c"]);
        let after = overlay(&view, &changed_records(&now, &view));
        assert_eq!(after.len(), 3);
        assert!(
            changed_records(&now, &after).is_empty(),
            "nothing is sent twice"
        );
    }

    fn tempdir() -> Result<tempfile::TempDir, StateError> {
        tempfile::tempdir().map_err(|source| {
            StateError::Lake(pitwall_lake::LakeError::Io {
                path: "tmp".into(),
                source,
            })
        })
    }

    #[test]
    fn a_publication_decodes_the_records_of_only_the_members_it_sends() -> Result<(), StateError> {
        let dir = tempdir()?;
        let state = State::open(&dir.path().display().to_string())?;
        let kept: Vec<crate::Kept> = (0..50)
            .map(|i| crate::Kept {
                record: record(&format!("m{i:02}"), f64::from(i), i != 7),
                part: None,
            })
            .collect();
        let file = crate::member_file::encode(&kept, "m@1", 1)?;
        let batch = file.batch.clone();
        let (_, rentals) = state.begin().write_members(file, true)?;
        let snapshot = Snapshot::new((vec![batch], rentals), Vec::new())?;
        let records: Vec<MemberRecord> = kept.iter().map(|k| k.record.clone()).collect();
        let mut view = view_of_records(&records);
        view.remove("m03");
        view.insert("m04".into(), [0; 16]);
        view.remove("m07");
        let sent: Vec<String> = changes(&snapshot, &view)?
            .into_iter()
            .map(|m| m.member_id)
            .collect();
        assert_eq!(sent, vec!["m03", "m04"], "m07 is not eligible");
        assert_eq!(snapshot.fetched().0, 2, "two members' rentals were read");
        Ok(())
    }

    #[test]
    fn a_view_written_as_records_by_an_earlier_pitwall_is_read_as_digests() -> Result<(), StateError>
    {
        let dir = tempdir()?;
        let state = State::open(&dir.path().display().to_string())?;
        let pubs = state.publications("t");
        let old = vec![record("a", 70.0, true), record("b", 80.0, true)];
        pubs.put_records(&Publications::name(1, "view.parquet"), &old, "m@1", 1)?;
        let intent = serde_json::to_vec(&intent(1, None, 2)).map_err(|e| StateError::Table {
            what: "test".into(),
            problem: e.to_string(),
        })?;
        pubs.loc
            .put(&Publications::name(1, "json"), Bytes::from(intent))?;
        pubs.finish(
            1,
            &Outcome::Committed {
                at: "t".into(),
                millis: 1,
            },
        )?;
        assert_eq!(pubs.view()?, (Some(1), view_of_records(&old)));
        Ok(())
    }

    fn intent(pseq: u64, base: Option<u64>, records: u64) -> Intent {
        Intent {
            pseq,
            topic: "t".into(),
            state_seq: 1,
            run_id: "run".into(),
            base_pseq: base,
            publication_id: format!("p{pseq}"),
            records,
            start_offsets: vec![(0, 0)],
            transactional: false,
            transactional_id: "tx".into(),
            started_at: "now".into(),
        }
    }

    #[test]
    fn a_partly_landed_publication_counts_exactly_what_landed() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|source| pitwall_lake::LakeError::Io {
            path: "tmp".into(),
            source,
        })?;
        let state = State::open(&dir.path().display().to_string())?;
        let pubs = state.publications("driving-score.member.v1");
        let first = vec![record("a", 70.0, true)];
        pubs.begin(&intent(1, None, 1), &first, &view_of_records(&first))?;
        pubs.finish(
            1,
            &Outcome::Committed {
                at: "t".into(),
                millis: 1,
            },
        )?;
        assert_eq!(pubs.view()?, (Some(1), view_of_records(&first)));
        // Publication 2 sends b and c; only b landed before the crash.
        let sent = vec![record("b", 80.0, true), record("c", 60.0, true)];
        let i2 = intent(2, Some(1), 2);
        pubs.begin(&i2, &sent, &overlay(&view_of_records(&first), &sent))?;
        assert!(
            pubs.begin(&i2, &sent, &View::new()).is_err(),
            "one publisher per pseq"
        );
        assert!(matches!(pubs.last()?, Some((_, None))));
        let found: std::collections::HashSet<String> = ["b".to_string()].into();
        let outcome = pubs.resolve(&i2, &found)?;
        pubs.finish(2, &outcome)?;
        let (_, view) = pubs.view()?;
        let mut ids: Vec<&str> = view.keys().map(String::as_str).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec!["a", "b"]);
        // What is left to send is c alone.
        let now = vec![first[0].clone(), sent[0].clone(), sent[1].clone()];
        let left: Vec<String> = changed_records(&now, &view)
            .into_iter()
            .map(|m| m.member_id)
            .collect();
        assert_eq!(left, vec!["c"]);
        Ok(())
    }
}
