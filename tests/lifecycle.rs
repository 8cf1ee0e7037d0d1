//! Starting and stopping an app: shutdown lets in-flight work finish, and work not started yet
//! stays in the store.

use tidings::prelude::*;
use tidings::{Error, Outcome};
use tokio::sync::Semaphore;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReportRequested {
    pub report_id: u32,
}

/// `started` gets a permit when the handler starts; the handler finishes once it gets one of
/// `release`.
#[derive(Debug)]
pub struct Gate {
    started: Semaphore,
    release: Semaphore,
}

#[handles]
async fn render_report(_event: &ReportRequested, gate: Dep<Gate>) {
    gate.started.add_permits(1);
    let _permit = gate.release.acquire().await.expect("the gate stays open");
}

#[tokio::test]
async fn shutdown_waits_for_the_handler_in_flight() {
    let store = InMemoryStore::default();
    let app = Tidings::builder("reports")
        .store(store.clone())
        .provide(Gate {
            started: Semaphore::new(0),
            release: Semaphore::new(0),
        })
        .build()
        .unwrap();
    let gate = app.dependency::<Gate>().unwrap();
    let running = app.start().await.unwrap();
    let published = app
        .domain_events()
        .publish(ReportRequested { report_id: 1 })
        .await
        .unwrap();
    gate.started.acquire().await.unwrap().forget();

    let shutdown = tokio::spawn(running.shutdown());
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!shutdown.is_finished(), "the handler is still running");
    gate.release.add_permits(1);
    shutdown.await.unwrap().unwrap();

    assert_eq!(
        store.outcomes(),
        [Outcome::Completed {
            handler: "lifecycle::render_report".into(),
            event_id: published.id,
            attempt: 1,
        }]
    );
}

#[tokio::test]
async fn events_published_after_shutdown_wait_in_the_store() {
    let store = InMemoryStore::default();
    let app = Tidings::builder("reports")
        .store(store.clone())
        .provide(Gate {
            started: Semaphore::new(0),
            release: Semaphore::new(1),
        })
        .build()
        .unwrap();
    app.start().await.unwrap().shutdown().await.unwrap();
    app.domain_events()
        .publish(ReportRequested { report_id: 2 })
        .await
        .unwrap();
    assert_eq!(
        store.pending(),
        (1, 0),
        "recorded: a durable store keeps it for the next process"
    );
    assert!(store.outcomes().is_empty());
}

#[tokio::test]
async fn an_app_starts_once() {
    let app = Tidings::builder("reports")
        .provide(Gate {
            started: Semaphore::new(0),
            release: Semaphore::new(0),
        })
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    assert!(
        matches!(app.start().await, Err(Error::AlreadyStarted(context)) if context == "reports")
    );
    running.shutdown().await.unwrap();
}

/// A long-running app on the in-memory store does not grow with every delivery: the store keeps
/// the last `capture` outcomes.
#[tokio::test]
async fn the_in_memory_store_keeps_the_last_outcomes() {
    let store = InMemoryStore::new().capture(2);
    let app = Tidings::builder("reports")
        .store(store.clone())
        .provide(Gate {
            started: Semaphore::new(0),
            release: Semaphore::new(100),
        })
        .build()
        .unwrap();
    let running = app.start().await.unwrap();
    let mut published = Vec::new();
    for report_id in 0..4 {
        let meta = app
            .domain_events()
            .publish(ReportRequested { report_id })
            .await
            .unwrap();
        published.push(meta.id);
        // One at a time, so that the outcomes come in this order.
        running.settle().await;
    }
    running.shutdown().await.unwrap();

    let kept: Vec<uuid::Uuid> = store
        .outcomes()
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::Completed { event_id, .. } => event_id,
            other => panic!("the handler completes: {other:?}"),
        })
        .collect();
    assert_eq!(kept, published[2..], "the last two outcomes");
}
