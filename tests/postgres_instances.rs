//! Two app instances of one context on one PostgreSQL schema (`DATABASE_URL`), each with its own
//! `PostgresStore` on its own pool, as two processes would be, drain one backlog recorded before
//! either starts: every delivery runs exactly once (B9's correctness half; the bench `drain`
//! measures its speed).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::PgPool;
use tidings::PostgresStore;
use tidings::prelude::*;
use uuid::Uuid;

/// The events of the one hot handler.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ParcelScanned {
    pub seq: u32,
}

/// The events of four handlers.
#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ParcelSorted {
    pub seq: u32,
}

/// Which instance a handler ran in.
#[derive(Debug)]
pub struct Instance(usize);

/// The instances each delivery ran in, by handler and event id, one entry per run.
#[derive(Debug, Default)]
pub struct Ledger(Mutex<HashMap<(&'static str, Uuid), Vec<usize>>>);

impl Ledger {
    fn ran(&self, handler: &'static str, meta: &EventMeta, instance: &Instance) {
        self.0
            .lock()
            .unwrap()
            .entry((handler, meta.id))
            .or_default()
            .push(instance.0);
    }
}

#[handles]
fn note_scan(_event: &ParcelScanned, meta: &EventMeta, ledger: Dep<Ledger>, at: Dep<Instance>) {
    ledger.ran("note_scan", meta, &at);
}

#[handles]
fn sort_a(_event: &ParcelSorted, meta: &EventMeta, ledger: Dep<Ledger>, at: Dep<Instance>) {
    ledger.ran("sort_a", meta, &at);
}

#[handles]
fn sort_b(_event: &ParcelSorted, meta: &EventMeta, ledger: Dep<Ledger>, at: Dep<Instance>) {
    ledger.ran("sort_b", meta, &at);
}

#[handles]
fn sort_c(_event: &ParcelSorted, meta: &EventMeta, ledger: Dep<Ledger>, at: Dep<Instance>) {
    ledger.ran("sort_c", meta, &at);
}

#[handles]
fn sort_d(_event: &ParcelSorted, meta: &EventMeta, ledger: Dep<Ledger>, at: Dep<Instance>) {
    ledger.ran("sort_d", meta, &at);
}

/// Events of the hot handler, and events of the four: 1,000 deliveries each.
const SCANNED: u32 = 1_000;
const SORTED: u32 = 250;

/// The instance `index` of the `parcels` app on `schema`, on a pool of its own.
async fn instance(url: &str, schema: &str, ledger: &Dep<Ledger>, index: usize) -> Tidings {
    let pool = PgPool::connect(url).await.unwrap();
    let store = PostgresStore::connect_with(pool, schema).await.unwrap();
    Tidings::builder("parcels")
        .store(store)
        .provide_dep(ledger.clone())
        .provide(Instance(index))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_run_every_delivery_of_one_backlog_exactly_once() {
    let test = "two_instances_run_every_delivery_of_one_backlog_exactly_once";
    let Some(url) = support::database_url(test) else {
        return;
    };
    let (pool, schema) = support::fresh_schema(&url, "instances_drain").await;
    let ledger = Dep::new(Ledger::default());
    let first = instance(&url, &schema, &ledger, 0).await;
    let second = instance(&url, &schema, &ledger, 1).await;

    // The backlog, recorded before either instance starts.
    let mut expected = Vec::new();
    let events = first.domain_events();
    let mut tx = pool.begin().await.unwrap();
    for seq in 0..SCANNED {
        let meta = events
            .publish_in(&mut tx, ParcelScanned { seq })
            .await
            .unwrap();
        expected.push(("note_scan", meta.id));
    }
    for seq in 0..SORTED {
        let meta = events
            .publish_in(&mut tx, ParcelSorted { seq })
            .await
            .unwrap();
        for handler in ["sort_a", "sort_b", "sort_c", "sort_d"] {
            expected.push((handler, meta.id));
        }
    }
    tx.commit().await.unwrap();

    let running_first = first.start().await.unwrap();
    let running_second = second.start().await.unwrap();
    let settled =
        Running::settle_all_for(&[&running_first, &running_second], Duration::from_secs(300)).await;
    running_first.shutdown().await.unwrap();
    running_second.shutdown().await.unwrap();
    if let Err(unsettled) = settled {
        panic!("{unsettled}");
    }

    let runs = ledger.0.lock().unwrap();
    let mut twice = Vec::new();
    let mut never = Vec::new();
    let mut by_instance: BTreeMap<(&str, usize), usize> = BTreeMap::new();
    for key in &expected {
        match runs.get(key).map(Vec::as_slice) {
            None | Some([]) => never.push(*key),
            Some([instance]) => *by_instance.entry((key.0, *instance)).or_default() += 1,
            Some(instances) => twice.push((*key, instances.to_vec())),
        }
    }
    eprintln!("deliveries run, by handler and instance: {by_instance:?}");
    assert_eq!(expected.len(), 2_000);
    assert!(never.is_empty(), "never run: {never:?}");
    assert!(twice.is_empty(), "run more than once: {twice:?}");
    assert_eq!(
        runs.len(),
        expected.len(),
        "only the recorded deliveries ran"
    );
}
