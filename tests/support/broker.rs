//! Brokers for fault tests: a private `nats-server` of the test's own (a free port, JetStream,
//! a temporary store directory) that the test can kill with SIGKILL and start again on the same
//! port and store, and a TCP proxy between a client and a server (the broker, the database)
//! that slows, holds or cuts the link on cue.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The `nats-server` binary: `NATS_SERVER` if set, else `nats-server` on the `PATH`, in
/// `/usr/sbin` or in `/usr/local/bin`. Without it the test says so and is skipped, unless
/// `TIDINGS_REQUIRE_SERVICES` is set: then it fails.
pub(crate) fn nats_server(test: &str) -> Option<PathBuf> {
    let named = std::env::var_os("NATS_SERVER").map(PathBuf::from);
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .collect::<Vec<_>>()
    });
    let usual = ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"].map(PathBuf::from);
    let found = named
        .into_iter()
        .chain(on_path)
        .chain(usual)
        .find(|path| path.is_file());
    match found {
        Some(path) => Some(path),
        None if std::env::var_os("TIDINGS_REQUIRE_SERVICES").is_some() => panic!(
            "{test}: no `nats-server` binary (set NATS_SERVER to one), and \
             TIDINGS_REQUIRE_SERVICES says NATS is required"
        ),
        None => {
            eprintln!(
                "SKIPPED {test}: install `nats-server` (or set NATS_SERVER to its path) to run it"
            );
            None
        }
    }
}

/// A `nats-server` of the test's own, with JetStream, on a free port of 127.0.0.1 and a store
/// directory of its own. Dropping it kills the server and removes the directory.
#[derive(Debug)]
pub(crate) struct PrivateNats {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// How many times the server was started.
    starts: usize,
}

impl PrivateNats {
    /// Starts a server for `test`, ready for JetStream requests, or `None` (said plainly)
    /// without the binary.
    pub(crate) async fn start(test: &str) -> Option<Self> {
        let bin = nats_server(test)?;
        let dir = std::env::temp_dir().join(format!("tidings-nats-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a store directory for the private NATS server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut nats = PrivateNats {
            bin,
            dir,
            port,
            child: None,
            starts: 0,
        };
        nats.launch().await;
        Some(nats)
    }

    /// Its URL.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL, at once: no flush, no goodbye to the clients.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again (killing it first if it runs), on the same port and store
    /// directory, and waits until JetStream answers.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    async fn launch(&mut self) {
        self.starts += 1;
        let log = self.dir.join(format!("server-{}.log", self.starts));
        let child = Command::new(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.join("jetstream"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if self.jetstream_answers().await {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the private nats-server on port {} exited with {status}; its log: {}",
                    self.port,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the private nats-server on port {} did not answer; its log: {}",
                self.port,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether the server takes a connection and answers a JetStream request without error.
    async fn jetstream_answers(&self) -> bool {
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_millis(500))
            .connect(self.url());
        let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(1), connect).await else {
            return false;
        };
        // The raw request: async-nats' `query_account` cannot read the answer of a 2.9 server.
        let request = client.request("$JS.API.INFO", "".into());
        let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(1), request).await else {
            return false;
        };
        serde_json::from_slice::<serde_json::Value>(&answer.payload)
            .is_ok_and(|info| info.get("error").is_none())
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy on a free port of 127.0.0.1 in front of an upstream server (a broker, a
/// database), with toxiproxy's vocabulary. It forwards both ways, and, when told:
///
/// - delays every chunk by a latency, each way ([`latency`](Self::latency));
/// - becomes a blackhole ([`blackhole`](Self::blackhole)): it holds what it reads, both ways,
///   and forwards nothing, without closing anything, until it is [healed](Self::heal); then
///   what it held goes on, in order;
/// - cuts a connection right after it forwarded a client chunk that holds a marker, or a given
///   number of chunks after it on that connection ([`cut_after_sending`](Self::cut_after_sending),
///   [`cut_after_sending_more`](Self::cut_after_sending_more)): such as `HPUB <subject>`, a
///   publication that reached the broker and whose acknowledgement cannot come back, or the
///   text of a SQL statement;
/// - cuts every open connection at once ([`cut_all`](Self::cut_all)), and refuses new ones
///   until healed ([`refuse`](Self::refuse)).
///
/// Dropping it closes every connection.
#[derive(Debug)]
pub(crate) struct LinkProxy {
    addr: SocketAddr,
    state: Arc<LinkState>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct LinkState {
    upstream: SocketAddr,
    rule: Mutex<Option<CutRule>>,
    /// How the link behaves now; every connection watches it.
    link: watch::Sender<Link>,
    /// Client chunks forwarded that held the marker.
    matched: AtomicUsize,
    /// Connections cut by the rule.
    cuts: AtomicUsize,
    /// Connections refused.
    refused: AtomicUsize,
}

/// How the link behaves.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    /// How long each chunk waits before it is forwarded, each way.
    latency: Duration,
    /// Whether every chunk is held, both ways.
    blackhole: bool,
    /// Whether new connections are closed as soon as they are accepted.
    refusing: bool,
    /// Counts the calls of `cut_all`: a connection opened before the last one is closed.
    cut_all: u64,
}

#[derive(Debug)]
struct CutRule {
    marker: Vec<u8>,
    /// How many client chunks of the connection are forwarded after the one with the marker
    /// before the cut.
    more: usize,
    every: usize,
    budget: usize,
}

impl LinkProxy {
    /// A proxy in front of the server on `upstream_port` of 127.0.0.1.
    pub(crate) async fn start(upstream_port: u16) -> Self {
        Self::start_to(SocketAddr::from(([127, 0, 0, 1], upstream_port))).await
    }

    /// A proxy in front of the server at `upstream`.
    pub(crate) async fn start_to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(LinkState {
            upstream,
            rule: Mutex::new(None),
            link: watch::Sender::new(Link::default()),
            matched: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let accepting = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            // Dropped with this task when the proxy is: every connection closes.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let link = *accepting.link.borrow();
                if link.refusing {
                    accepting.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                connections.spawn(pipe(client, Arc::clone(&accepting), link.cut_all));
                while connections.try_join_next().is_some() {}
            }
        });
        LinkProxy {
            addr,
            state,
            accept,
        }
    }

    /// The URL of the proxy, for a NATS client.
    pub(crate) fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The port of the proxy, on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// From now on, cuts the connection right after forwarding every `every`-th client chunk
    /// that holds `marker`, `budget` times in all.
    pub(crate) fn cut_after_sending(&self, marker: &str, every: usize, budget: usize) {
        self.cut_after_sending_more(marker, 0, every, budget);
    }

    /// From now on, cuts the connection after forwarding every `every`-th client chunk that
    /// holds `marker` and then `more` client chunks of that connection, `budget` times in all.
    /// For a database client that sends a statement's text and, once the server parsed it,
    /// runs it in a chunk of its own: `more` 0 cuts the connection before the statement ran,
    /// 1 after the server got the order to run it, before its answer came back.
    pub(crate) fn cut_after_sending_more(
        &self,
        marker: &str,
        more: usize,
        every: usize,
        budget: usize,
    ) {
        *self.state.rule.lock().unwrap() = Some(CutRule {
            marker: marker.as_bytes().to_vec(),
            more,
            every: every.max(1),
            budget,
        });
    }

    /// From now on, every chunk waits `latency` before it is forwarded, each way.
    pub(crate) fn latency(&self, latency: Duration) {
        self.state.link.send_modify(|link| link.latency = latency);
    }

    /// From now on, the proxy holds every chunk it reads, both ways, and forwards nothing,
    /// without closing a connection, until [healed](Self::heal).
    pub(crate) fn blackhole(&self) {
        self.state.link.send_modify(|link| link.blackhole = true);
    }

    /// Closes every open connection, both sides, now.
    pub(crate) fn cut_all(&self) {
        self.state.link.send_modify(|link| link.cut_all += 1);
    }

    /// From now on, closes every new connection as soon as it is accepted, until
    /// [healed](Self::heal).
    pub(crate) fn refuse(&self) {
        self.state.link.send_modify(|link| link.refusing = true);
    }

    /// Back to a plain link: no latency, no blackhole (what it held is forwarded, in order),
    /// new connections welcome. A cut rule stays until its budget is spent.
    pub(crate) fn heal(&self) {
        self.state.link.send_modify(|link| {
            link.latency = Duration::ZERO;
            link.blackhole = false;
            link.refusing = false;
        });
    }

    /// How many connections the cut rule cut so far.
    pub(crate) fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// How many forwarded client chunks held the marker so far.
    pub(crate) fn matched(&self) -> usize {
        self.state.matched.load(Ordering::SeqCst)
    }

    /// How many connections it refused so far.
    pub(crate) fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl LinkState {
    /// After forwarding `chunk` from a client: `Some(more)` if the rule cuts its connection
    /// after `more` further client chunks.
    fn armed_by(&self, chunk: &[u8]) -> Option<usize> {
        let mut rule = self.rule.lock().unwrap();
        let rule = rule.as_mut()?;
        if rule.budget == 0 || !chunk.windows(rule.marker.len()).any(|w| w == rule.marker) {
            return None;
        }
        let matched = self.matched.fetch_add(1, Ordering::SeqCst) + 1;
        if !matched.is_multiple_of(rule.every) {
            return None;
        }
        rule.budget -= 1;
        Some(rule.more)
    }
}

/// Forwards one client connection to the upstream server, both ways, until either side closes,
/// the rule cuts it, or every connection opened before `cut_all` changes from `generation` is
/// cut: then both sockets close.
async fn pipe(client: TcpStream, state: Arc<LinkState>, generation: u64) {
    let Ok(server) = TcpStream::connect(state.upstream).await else {
        return;
    };
    let mut link = state.link.subscribe();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = forward(client_read, server_write, &state, true);
    let down = forward(server_read, client_write, &state, false);
    let cut = link.wait_for(|link| link.cut_all != generation);
    tokio::select! {
        () = up => {}
        () = down => {}
        _ = cut => {}
    }
}

/// Forwards what `from` reads to `to`, each chunk when the link lets it through: after the
/// latency, and not while the link is a blackhole. Reading goes on meanwhile, so that neither
/// side sees its writes held back. Ends when `from` is closed and everything it sent was
/// forwarded, when `to` is closed, or, for the client's side (`from_client`), when the rule
/// cuts the connection.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: &LinkState,
    from_client: bool,
) {
    let (chunks, mut held) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reading = async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if chunks.send((Instant::now(), buffer[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writing = async {
        let mut link = state.link.subscribe();
        // Client chunks still to forward before the rule's cut, once it is armed.
        let mut countdown: Option<usize> = None;
        while let Some((read_at, chunk)) = held.recv().await {
            let Ok(latency) = link
                .wait_for(|link| !link.blackhole)
                .await
                .map(|l| l.latency)
            else {
                return;
            };
            tokio::time::sleep_until(read_at + latency).await;
            // The link may have become a blackhole meanwhile.
            if link.wait_for(|link| !link.blackhole).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            if !from_client {
                continue;
            }
            let cut = match countdown {
                Some(left) => {
                    countdown = Some(left - 1);
                    left == 1
                }
                None => match state.armed_by(&chunk) {
                    Some(0) => true,
                    Some(more) => {
                        countdown = Some(more);
                        false
                    }
                    None => false,
                },
            };
            if cut {
                state.cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    };
    let mut reading = std::pin::pin!(reading);
    let mut writing = std::pin::pin!(writing);
    tokio::select! {
        () = &mut writing => return,
        // Closed: what was read is still forwarded.
        () = &mut reading => {}
    }
    writing.await;
}
