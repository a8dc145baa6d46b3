//! `examples/tokio_embed.rs`: the reactor inside a tokio current-thread
//! runtime, through `AsyncFd` on its descriptor and a sleep to its next
//! deadline, against nginx while another tokio task runs.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;
#[path = "../examples/tokio_embed.rs"]
#[allow(dead_code, reason = "the example's main and server are not used here")]
mod tokio_embed;

#[test]
fn the_reactor_runs_inside_tokio_beside_another_task() {
    let Some(nginx) = common::nginx::Nginx::start_http(1000, "60s") else {
        return;
    };
    let report = tokio_embed::run(common::LOCALHOST, nginx.port(), 20).expect("the tokio run");
    assert_eq!(report.responses, 20);
    assert_eq!(report.opened, 1, "one kept-alive connection for all");
    assert!(
        report.other_task_ticks > 0,
        "the other task ran: {report:?}"
    );
}
