//! Brokers for fault tests: a private `nats-server` of the test's own (a free port, JetStream,
//! a temporary store directory) that the test can kill with SIGKILL and start again on the same
//! port and store, and a TCP proxy between a client and the broker that cuts the link on cue.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// A TCP proxy on a free port of 127.0.0.1 in front of `upstream`, that forwards both ways and,
/// when told, cuts a connection right after it forwarded bytes from the client that hold a
/// marker (such as `HPUB <subject>`: a publication reached the server, its acknowledgement
/// cannot come back). Dropping it closes every connection.
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
    /// Client chunks forwarded that held the marker.
    matched: AtomicUsize,
    /// Connections cut.
    cuts: AtomicUsize,
}

#[derive(Debug)]
struct CutRule {
    marker: Vec<u8>,
    every: usize,
    budget: usize,
}

impl LinkProxy {
    /// A proxy in front of the server on `upstream_port` of 127.0.0.1.
    pub(crate) async fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(LinkState {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            rule: Mutex::new(None),
            matched: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
        });
        let accepting = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            // Dropped with this task when the proxy is: every connection closes.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(pipe(client, Arc::clone(&accepting)));
                while connections.try_join_next().is_some() {}
            }
        });
        LinkProxy {
            addr,
            state,
            accept,
        }
    }

    /// The URL of the proxy, for the client.
    pub(crate) fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// From now on, cuts the connection right after forwarding every `every`-th client chunk
    /// that holds `marker`, `budget` times in all.
    pub(crate) fn cut_after_sending(&self, marker: &str, every: usize, budget: usize) {
        *self.state.rule.lock().unwrap() = Some(CutRule {
            marker: marker.as_bytes().to_vec(),
            every: every.max(1),
            budget,
        });
    }

    /// How many connections it cut so far.
    pub(crate) fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// How many forwarded client chunks held the marker so far.
    pub(crate) fn matched(&self) -> usize {
        self.state.matched.load(Ordering::SeqCst)
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl LinkState {
    /// Whether the connection is cut after forwarding `chunk`.
    fn cut_after(&self, chunk: &[u8]) -> bool {
        let mut rule = self.rule.lock().unwrap();
        let Some(rule) = rule.as_mut() else {
            return false;
        };
        if rule.budget == 0 || !chunk.windows(rule.marker.len()).any(|w| w == rule.marker) {
            return false;
        }
        let matched = self.matched.fetch_add(1, Ordering::SeqCst) + 1;
        if !matched.is_multiple_of(rule.every) {
            return false;
        }
        rule.budget -= 1;
        self.cuts.fetch_add(1, Ordering::SeqCst);
        true
    }
}

/// Forwards one client connection to the upstream server, both ways, until either side closes
/// or the rule cuts it: then both sockets close.
async fn pipe(client: TcpStream, state: Arc<LinkState>) {
    let Ok(server) = TcpStream::connect(state.upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
            if state.cut_after(&buffer[..n]) {
                return;
            }
        }
    };
    let down = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::select! {
        () = up => {}
        _ = down => {}
    }
}
