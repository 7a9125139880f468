//! librdkafka's mock cluster as a process of its own, with a topic and
//! faults pushed on a timer: the broker of bench/score_soak.py's second
//! form, where transactions are real and produce and commit errors come on
//! demand (no broker process does that here).
//!
//!     cargo run --release -p pitwall-publish --example kafka_mock_cluster -- TOPIC [EVERY_MS] [SEED]
//!
//! Prints `bootstrap HOST:PORT,…` once the topic exists (3 brokers, 3
//! partitions). Every EVERY_MS (default 7000; 0: never) it pushes one burst
//! of errors for the next requests of one kind, chosen by a seeded
//! generator: Produce (not enough replicas, request timed out), EndTxn
//! (coordinator loading, or an invalid transaction state that refuses the
//! commit), AddPartitionsToTxn (concurrent transactions); and prints
//! `faults {json}` with the counts so far. A line `quiet` on its stdin stops
//! the faults and clears those pending, and is answered with a line `quiet`
//! once done (a caller that gets no answer is running a binary built before
//! this: faults would go on); it runs until its stdin closes.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

type Bursts = [(&'static str, RDKafkaApiKey, &'static [RDKafkaRespErr]); 5];

const BURSTS: Bursts = [
    (
        "produce_not_enough_replicas",
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 3],
    ),
    (
        "produce_timed_out",
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 2],
    ),
    (
        "commit_coordinator_loading",
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 3],
    ),
    (
        "commit_refused",
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE; 6],
    ),
    (
        "add_partitions_concurrent",
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS; 3],
    ),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let topic = args
        .first()
        .ok_or("usage: kafka_mock_cluster TOPIC [EVERY_MS] [SEED]")?;
    let every: u64 = args.get(1).map_or(Ok(7000), |s| s.parse())?;
    let mut state: u64 = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let cluster = MockCluster::new(3)?;
    cluster.create_topic(topic, 3, 3)?;
    println!("bootstrap {}", cluster.bootstrap_servers());
    std::io::stdout().flush()?;
    let (open, quiet) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(false)),
    );
    {
        let (open, quiet) = (open.clone(), quiet.clone());
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if line.is_ok_and(|l| l.trim() == "quiet") {
                    quiet.store(true, Ordering::SeqCst);
                }
            }
            open.store(false, Ordering::SeqCst);
        });
    }
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut cleared = false;
    while open.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(every.max(200)));
        if quiet.load(Ordering::SeqCst) {
            if !cleared {
                for (_, key, _) in BURSTS {
                    cluster.clear_request_errors(key);
                }
                cleared = true;
                println!("quiet");
                std::io::stdout().flush()?;
            }
            continue;
        }
        if every == 0 {
            continue;
        }
        // xorshift: a fixed seed gives the same bursts in the same order.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let (name, key, errors) = BURSTS[(state % BURSTS.len() as u64) as usize];
        cluster.request_errors(key, errors);
        *counts.entry(name).or_default() += 1;
        println!("faults {}", serde_json::to_string(&counts)?);
        std::io::stdout().flush()?;
    }
    Ok(())
}
