//! Finding a server on the network: `serve` in one network namespace announces
//! itself (mDNS); `list` and `view` with no address, in another namespace joined
//! by a veth pair, find it. Multicast never leaves the test's own namespaces.

use std::time::Duration;

use crate::util::{NetnsPair, Proc, SERVE_PLAINTEXT, VIEW_PLAINTEXT};

fn in_ns(ns: &str, name: &str, args: &[&str]) -> Proc {
    NetnsPair::livestream(ns, name, args)
}

#[test]
fn list_and_view_find_the_server_by_itself() {
    let net = NetnsPair::new(None);
    let mut server = net.serve(
        "0.0.0.0:7878",
        &[
            "--set",
            "serve.name=\"garden cam\"",
            // Pairing, as by default: the TXT record says so, with the key.
            "--set",
            "serve.auth=\"pair\"",
        ],
    );
    server.wait_stderr("announced as \"garden cam\"", 1, Duration::from_secs(15));
    server.wait_for("the pairing code", Duration::from_secs(15), |out, _| {
        out.contains("server key: ")
    });
    let out = server.stdout();
    let field = |label: &str| {
        let at = out.find(label).unwrap() + label.len();
        out[at..].split_whitespace().next().unwrap().to_string()
    };
    let (code, key) = (field("pairing code: "), field("server key: "));

    let mut list = in_ns(&net.viewer_ns, "list", &["list", "--wait", "5"]);
    list.expect_success(Duration::from_secs(20));
    assert!(
        list.stdout().contains(&format!(
            "garden cam  10.231.0.1:7878  codec h264, 320x240, pairing required, key {key}"
        )),
        "list printed:\n{}\n{}",
        list.stdout(),
        list.stderr()
    );

    // No address: the only server found; paired with the code.
    let mut view = in_ns(
        &net.viewer_ns,
        "view",
        &["view", "--frames", "10", "-q", "--pair", &code],
    );
    view.expect_success(Duration::from_secs(20));
    assert!(
        view.stderr()
            .contains("found \"garden cam\" at 10.231.0.1:7878"),
        "{}",
        view.stderr()
    );
    // By name, paired now: no code.
    let mut view = in_ns(
        &net.viewer_ns,
        "view",
        &[
            "view",
            "Garden Cam",
            "--frames",
            "5",
            "-q",
            "--set",
            "view.auth=\"pair\"",
        ],
    );
    view.expect_success(Duration::from_secs(20));
    // A name nobody has: says what there is.
    let mut view = in_ns(
        &net.viewer_ns,
        "view",
        &["view", "kitchen", VIEW_PLAINTEXT, "--frames", "5", "-q"],
    );
    let status = view.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    assert!(
        view.stderr()
            .contains("no server named \"kitchen\" found on the network; found:")
            && view.stderr().contains("1. garden cam at 10.231.0.1:7878"),
        "{}",
        view.stderr()
    );
    server.terminate();

    // Gone: its goodbye removes it from the list.
    let mut list = in_ns(&net.viewer_ns, "list", &["list", "--wait", "3"]);
    list.expect_success(Duration::from_secs(20));
    assert!(
        list.stdout().contains("no livestream server found"),
        "{}",
        list.stdout()
    );
}

#[test]
fn a_loopback_server_is_not_announced() {
    let net = NetnsPair::new(None);
    let mut server = net.serve("127.0.0.1:7878", &[SERVE_PLAINTEXT]);
    let mut list = in_ns(&net.viewer_ns, "list", &["list", "--wait", "3"]);
    list.expect_success(Duration::from_secs(20));
    assert!(
        list.stdout().contains("no livestream server found"),
        "{}",
        list.stdout()
    );
    assert!(
        !server.stderr().contains("announced as"),
        "{}",
        server.stderr()
    );
    server.terminate();
}
