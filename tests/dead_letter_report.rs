//! A handler that dead-letters in a program with no tracing subscriber is still reported: on
//! standard error, with a hint on how to see every failure.

use tidings::prelude::*;

#[domain_event]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderPlaced {
    pub order_id: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("order {0} is refused")]
pub struct Refused(u64);

impl Retryable for Refused {
    fn is_retryable(&self) -> bool {
        false
    }
}

#[handles]
fn refuse_order(event: &OrderPlaced) -> Result<(), Refused> {
    Err(Refused(event.order_id))
}

/// The program: no subscriber, one order, one failing handler.
#[tokio::test]
#[ignore = "the child process of the test below, started by it"]
async fn child() {
    let app = Tidings::builder("orders").build().unwrap();
    let running = app.start().await.unwrap();
    app.domain_events()
        .publish(OrderPlaced { order_id: 7 })
        .await
        .unwrap();
    running.settle().await;
    running.shutdown().await.unwrap();
}

#[test]
fn a_dead_letter_is_reported_without_a_tracing_subscriber() {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let output = std::process::Command::new(exe)
        .args(["--exact", "child", "--ignored", "--nocapture"])
        .output()
        .expect("the child process runs");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "tidings: the `orders` app dead-lettered handler \
             `dead_letter_report::refuse_order`: order 7 is refused"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("no tracing subscriber is installed"),
        "{stderr}"
    );
}
