//! The shared lease store: a DynamoDB table, one item per shard, every
//! change a conditional write — how several pods coordinate. Attribute names
//! follow the KCL's lease table (leaseKey, leaseOwner, leaseCounter,
//! checkpoint, checkpointSubSequenceNumber, parentShardId,
//! ownerSwitchesSinceCheckpoint) so the table reads familiar.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};

use crate::{Checkpoint, Lease, LeaseError, LeaseStore};

pub struct DynamoLeases {
    table: String,
    client: Client,
}

type Item = HashMap<String, AttributeValue>;

impl DynamoLeases {
    /// A client from the standard AWS environment (region, credentials chain,
    /// `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_DYNAMODB`).
    pub async fn from_env(table: &str) -> DynamoLeases {
        let conf = aws_config::load_from_env().await;
        // The SDK sets no call timeout: one answer that never comes would
        // hold up the worker's loop (the renewals of every lease it holds,
        // taking, reaping) for as long as the connection stays open. A lease
        // call is small; one attempt past 3 s is retried, and a call past
        // 10 s fails and is retried by the loop.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(std::time::Duration::from_secs(3))
            .operation_timeout(std::time::Duration::from_secs(10))
            .build();
        let dconf = aws_sdk_dynamodb::config::Builder::from(&conf)
            .timeout_config(timeouts)
            .build();
        DynamoLeases {
            table: table.to_string(),
            client: Client::from_conf(dconf),
        }
    }

    fn err<E: std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        what: &str,
        e: SdkError<E, R>,
    ) -> LeaseError {
        LeaseError::Store {
            store: self.name(),
            problem: format!(
                "{what}: {}; check AWS_REGION, the credentials chain, AWS_ENDPOINT_URL(_DYNAMODB) and the table's permissions",
                DisplayErrorContext(e)
            ),
        }
    }

    fn build_err(&self, e: aws_sdk_dynamodb::error::BuildError) -> LeaseError {
        LeaseError::Store {
            store: self.name(),
            problem: e.to_string(),
        }
    }

    /// A conditional write's outcome: true if it applied, false if it lost
    /// to another worker's write (which is no error), else the error.
    fn applied<T, E, R>(
        &self,
        what: &str,
        res: Result<T, SdkError<E, R>>,
    ) -> Result<bool, LeaseError>
    where
        E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        match res {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("ConditionalCheckFailedException") =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err(what, e)),
        }
    }

    /// A write that makes `owner` the owner and moves the counter on from
    /// `seen`, if nobody moved it first; the caller adds the expression.
    fn owner_write(
        &self,
        shard: &str,
        owner: &str,
        seen: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let (k, v) = Self::key(shard);
        self.client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .condition_expression("leaseCounter = :seen")
            .expression_attribute_values(":o", AttributeValue::S(owner.into()))
            .expression_attribute_values(":next", n(seen + 1))
            .expression_attribute_values(":seen", n(seen))
    }

    /// Whether an owner write that answered "condition failed" had in fact
    /// landed: the SDK retries an attempt that timed out, and when the first
    /// attempt was applied the retry finds the counter already moved, by us.
    /// Read as KCL does, so that a renewal is not mistaken for a lost lease.
    async fn landed_anyway(&self, shard: &str, owner: &str, seen: u64) -> Result<bool, LeaseError> {
        let (k, v) = Self::key(shard);
        let res = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(k, v)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("reading a lease back", e))?;
        Ok(res
            .item()
            .and_then(lease_from)
            .is_some_and(|l| l.owner.as_deref() == Some(owner) && l.counter == seen + 1))
    }

    /// [`applied`](Self::applied) for an owner write, with a refusal checked
    /// against the table (see [`landed_anyway`](Self::landed_anyway)).
    async fn owner_applied<T, E, R>(
        &self,
        what: &str,
        res: Result<T, SdkError<E, R>>,
        (shard, owner, seen): (&str, &str, u64),
    ) -> Result<Option<u64>, LeaseError>
    where
        E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        let ok = self.applied(what, res)? || self.landed_anyway(shard, owner, seen).await?;
        Ok(ok.then_some(seen + 1))
    }

    fn key(shard: &str) -> (String, AttributeValue) {
        ("leaseKey".into(), AttributeValue::S(shard.into()))
    }

    /// The table's status (`ACTIVE`, `CREATING` …) and item count, or None
    /// when it does not exist yet (`prepare` creates it). Read-only: what
    /// `pitwall doctor` reports.
    pub async fn describe(&self) -> Result<Option<(String, i64)>, LeaseError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(d) => Ok(d.table().map(|t| {
                let status = t.table_status().map_or("unknown", |s| s.as_str());
                (status.to_string(), t.item_count().unwrap_or(0))
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.err("describing the lease table", e)),
        }
    }

    async fn wait_active(&self) -> Result<(), LeaseError> {
        for _ in 0..120 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.err("describing the lease table", e))?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(LeaseError::Store {
            store: self.name(),
            problem: "the lease table did not become ACTIVE within 60 s".into(),
        })
    }
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_n(item: &Item, k: &str) -> u64 {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn checkpoint_attrs(cp: &Checkpoint) -> (AttributeValue, AttributeValue) {
    match cp {
        Checkpoint::Start => (AttributeValue::S("START".into()), n(0)),
        Checkpoint::ShardEnd => (AttributeValue::S("SHARD_END".into()), n(0)),
        Checkpoint::Sequence {
            sequence_number,
            sub_sequence,
        } => (AttributeValue::S(sequence_number.clone()), n(*sub_sequence)),
    }
}

/// A lease item, or None (logged) when it is not one: restarting a shard
/// whose checkpoint is unreadable could write its events twice, so it is
/// left alone until someone fixes the item.
fn lease_from(item: &Item) -> Option<Lease> {
    let shard = get_s(item, "leaseKey").unwrap_or("(no leaseKey)");
    let Some(stored) = get_s(item, "checkpoint") else {
        tracing::error!(
            shard,
            "lease item without a checkpoint attribute: the shard is not read"
        );
        return None;
    };
    let checkpoint = match stored {
        // The KCL's sentinels for "nothing read yet" mean the same here.
        "START" | "TRIM_HORIZON" | "LATEST" | "AT_TIMESTAMP" => Checkpoint::Start,
        "SHARD_END" => Checkpoint::ShardEnd,
        seq if !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) => Checkpoint::Sequence {
            sequence_number: seq.to_string(),
            sub_sequence: get_n(item, "checkpointSubSequenceNumber"),
        },
        other => {
            tracing::error!(
                shard,
                checkpoint = other,
                "unreadable checkpoint in the lease table: the shard is not read until it holds a sequence number, START or SHARD_END"
            );
            return None;
        }
    };
    let mut parents = item
        .get("parentShardId")
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default();
    parents.sort();
    Some(Lease {
        shard_id: get_s(item, "leaseKey")?.to_string(),
        owner: get_s(item, "leaseOwner").map(str::to_string),
        counter: get_n(item, "leaseCounter"),
        checkpoint,
        parents,
        owner_switches: get_n(item, "ownerSwitchesSinceCheckpoint"),
        throughput: get_n(item, "throughputBytesPerSec"),
        pending_owner: get_s(item, "pendingOwner").map(str::to_string),
    })
}

#[async_trait::async_trait]
impl LeaseStore for DynamoLeases {
    fn name(&self) -> String {
        format!("dynamodb:{}", self.table)
    }

    async fn prepare(&self) -> Result<(), LeaseError> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("leaseKey")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| self.build_err(e))?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("leaseKey")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| self.build_err(e))?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(self.err("creating the lease table", e)),
        }
        self.wait_active().await
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let res = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("listing leases", e))?;
            out.extend(res.items().iter().filter_map(lease_from));
            match res.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        Ok(out)
    }

    async fn create(&self, l: &Lease) -> Result<bool, LeaseError> {
        let (cp, sub) = checkpoint_attrs(&l.checkpoint);
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("leaseKey", AttributeValue::S(l.shard_id.clone()))
            .item("leaseCounter", n(l.counter))
            .item("checkpoint", cp)
            .item("checkpointSubSequenceNumber", sub)
            .item("ownerSwitchesSinceCheckpoint", n(l.owner_switches))
            .condition_expression("attribute_not_exists(leaseKey)");
        if !l.parents.is_empty() {
            req = req.item("parentShardId", AttributeValue::Ss(l.parents.clone()));
        }
        self.applied("creating a lease", req.send().await)
    }

    async fn claim(
        &self,
        shard: &str,
        owner: &str,
        seen_counter: u64,
        take: bool,
    ) -> Result<Option<u64>, LeaseError> {
        let res = self
            .owner_write(shard, owner, seen_counter)
            .update_expression(if take {
                // A take ends any hand-over asked of the previous owner.
                "SET leaseOwner = :o, leaseCounter = :next, \
                 ownerSwitchesSinceCheckpoint = ownerSwitchesSinceCheckpoint + :sw \
                 REMOVE pendingOwner"
            } else {
                "SET leaseOwner = :o, leaseCounter = :next, \
                 ownerSwitchesSinceCheckpoint = ownerSwitchesSinceCheckpoint + :sw"
            })
            .expression_attribute_values(":sw", n(u64::from(take)))
            .send()
            .await;
        self.owner_applied("claiming a lease", res, (shard, owner, seen_counter))
            .await
    }

    async fn renew(
        &self,
        shard: &str,
        owner: &str,
        seen_counter: u64,
        throughput: u64,
    ) -> Result<Option<u64>, LeaseError> {
        let res = self
            .owner_write(shard, owner, seen_counter)
            .update_expression(
                "SET leaseOwner = :o, leaseCounter = :next, throughputBytesPerSec = :t",
            )
            .expression_attribute_values(":t", n(throughput))
            .send()
            .await;
        self.owner_applied("renewing a lease", res, (shard, owner, seen_counter))
            .await
    }

    async fn request_handoff(
        &self,
        shard: &str,
        requester: &str,
        seen_counter: u64,
    ) -> Result<bool, LeaseError> {
        let (k, v) = Self::key(shard);
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .update_expression("SET pendingOwner = :r")
            .condition_expression(
                "leaseCounter = :seen AND attribute_not_exists(pendingOwner) \
                 AND attribute_exists(leaseOwner) AND leaseOwner <> :r",
            )
            .expression_attribute_values(":r", AttributeValue::S(requester.into()))
            .expression_attribute_values(":seen", n(seen_counter))
            .send()
            .await;
        self.applied("asking for a hand-over", res)
    }

    async fn hand_over(&self, shard: &str, owner: &str, to: &str) -> Result<bool, LeaseError> {
        let (k, v) = Self::key(shard);
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .update_expression(
                "SET leaseOwner = :to, leaseCounter = leaseCounter + :one, \
                 ownerSwitchesSinceCheckpoint = ownerSwitchesSinceCheckpoint + :one \
                 REMOVE pendingOwner",
            )
            .condition_expression("leaseOwner = :o AND pendingOwner = :to")
            .expression_attribute_values(":o", AttributeValue::S(owner.into()))
            .expression_attribute_values(":to", AttributeValue::S(to.into()))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        self.applied("handing a lease over", res)
    }

    async fn checkpoint(
        &self,
        shard: &str,
        owner: &str,
        cp: &Checkpoint,
    ) -> Result<bool, LeaseError> {
        let (k, v) = Self::key(shard);
        let (c, sub) = checkpoint_attrs(cp);
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .update_expression("SET checkpoint = :c, checkpointSubSequenceNumber = :sub")
            .condition_expression("leaseOwner = :o")
            .expression_attribute_values(":c", c)
            .expression_attribute_values(":sub", sub)
            .expression_attribute_values(":o", AttributeValue::S(owner.into()))
            .send()
            .await;
        self.applied("checkpointing", res)
    }

    async fn release(&self, shard: &str, owner: &str) -> Result<bool, LeaseError> {
        let (k, v) = Self::key(shard);
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .update_expression(
                "REMOVE leaseOwner, pendingOwner SET leaseCounter = leaseCounter + :one",
            )
            .condition_expression("leaseOwner = :o")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":o", AttributeValue::S(owner.into()))
            .send()
            .await;
        self.applied("releasing a lease", res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(checkpoint: &str) -> Item {
        [
            ("leaseKey", AttributeValue::S("shard-1".into())),
            ("checkpoint", AttributeValue::S(checkpoint.into())),
            ("checkpointSubSequenceNumber", AttributeValue::N("3".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn checkpoints_are_read_as_the_kcl_writes_them() {
        let cp = |s| lease_from(&item(s)).map(|l| l.checkpoint);
        assert_eq!(
            cp("4959"),
            Some(Checkpoint::Sequence {
                sequence_number: "4959".into(),
                sub_sequence: 3
            })
        );
        assert_eq!(cp("SHARD_END"), Some(Checkpoint::ShardEnd));
        assert_eq!(cp("TRIM_HORIZON"), Some(Checkpoint::Start));
        assert_eq!(cp("START"), Some(Checkpoint::Start));
    }

    #[test]
    fn an_unreadable_checkpoint_leaves_its_shard_alone() {
        assert_eq!(lease_from(&item("garbage")), None);
        assert_eq!(lease_from(&item("")), None);
        let mut no_checkpoint = item("1");
        no_checkpoint.remove("checkpoint");
        assert_eq!(lease_from(&no_checkpoint), None);
    }
}
