//! A real Kafka-compatible broker for tests: [tansu](https://github.com/tansu-io/tansu) 0.6.0,
//! started on a free port of 127.0.0.1 in a temporary directory.
//!
//! Synchronous on purpose (std only), so a test can use it with or without an async runtime.
//! This is test code: every failure panics with a message that says what went wrong, including
//! the tail of the broker's log.
//!
//! ```no_run
//! use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
//!
//! let mut broker = TansuBroker::start(Storage::Sqlite);
//! broker.create_topic("orders", 3);
//! let bootstrap = broker.bootstrap(); // "127.0.0.1:PORT"
//! # let _ = bootstrap;
//! broker.stop();
//! broker.start_again(); // same port, same data
//! ```
//!
//! The binary is looked up in this order: `$KONSUMER_TANSU`, then
//! `${KONSUMER_CACHE:-$HOME/.cache/konsumer}/tansu-0.6.0/bin/tansu` (where
//! `scripts/install-tansu.sh` puts it), then `tansu` on `PATH`.
//! Set `KONSUMER_TANSU_LOG` to a `RUST_LOG` filter (e.g. `debug`) to make tansu log more; by
//! default it logs errors only. Its output goes to [`TansuBroker::log_path`].
//!
//! The broker dies with the test: tansu runs under a small `sh` watchdog whose standard input is
//! a pipe held by this process. When the pipe reaches end-of-file — [`TansuBroker::stop`], drop,
//! or the test process dying in any way (panic=abort, SIGKILL, a nextest timeout) — the watchdog
//! interrupts tansu, and kills it if it has not gone within a few seconds.

use std::{
    env,
    fs::{self, File, OpenOptions},
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, MutexGuard, PoisonError},
    thread,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        metadata_request::MetadataRequestTopic, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
        MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
    },
    protocol::{encode_request_header_into_buffer, Decodable, Encodable, StrBytes},
};

/// The tansu version the scripts install and this fixture expects.
pub const TANSU_VERSION: &str = "0.6.0";

/// How long [`TansuBroker::start`] and [`TansuBroker::start_again`] wait for the broker to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`TansuBroker::stop`] waits for tansu to exit after interrupting it, before killing it.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long [`TansuBroker::create_topic`] waits for a new topic to show all its partitions.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);
const LOG_FILE: &str = "tansu.log";
const PID_FILE: &str = "tansu.pid";

/// Where the broker keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `memory://tansu/`: nothing survives a restart. Every compression codec works; ListOffsets
    /// (latest) answers wrongly in tansu 0.6.0.
    Memory,
    /// `sqlite://tansu.db` in the broker's temporary directory: offsets and high-water marks are
    /// right and data survives [`TansuBroker::stop`] + [`TansuBroker::start_again`]. Fetching a
    /// snappy-compressed batch fails on the broker in tansu 0.6.0.
    Sqlite,
}

impl Storage {
    fn engine_url(self) -> &'static str {
        match self {
            // Needs tansu built with the `dynostore` feature.
            Storage::Memory => "memory://tansu/",
            // tansu resolves this relative to its working directory (the temporary directory).
            Storage::Sqlite => "sqlite://tansu.db",
        }
    }
}

/// The watchdog. `$1` is the tansu binary, the rest are the arguments of `tansu broker`.
/// The shell's exit status is tansu's, so `Child::try_wait` on the shell tells whether tansu runs.
const WATCHDOG: &str = r#"
exec 3<&0
tansu="$1"
shift
"$tansu" broker "$@" </dev/null 3<&- &
pid=$!
echo "$pid" > tansu.pid
(
    while read -r _; do :; done
    kill -INT "$pid" 2>/dev/null
    n=0
    while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 5 ]; do
        sleep 1
        n=$((n + 1))
    done
    kill -KILL "$pid" 2>/dev/null
) <&3 &
watchdog=$!
exec 3<&-
wait "$pid"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status"
"#;

/// A tansu broker process on `127.0.0.1:port()`. Stopped (killed) on drop.
#[derive(Debug)]
pub struct TansuBroker {
    binary: PathBuf,
    storage: Storage,
    port: u16,
    /// The port named in Metadata answers, when it is not `port` (a proxy in front).
    advertised_port: Option<u16>,
    dir: tempfile::TempDir,
    /// The `sh` watchdog; its exit means tansu has exited. In a mutex so that `is_running` can
    /// take `&self` (`Child::try_wait` needs `&mut`).
    shell: Mutex<Option<Child>>,
    /// The write end of the watchdog's stdin: dropping it stops tansu.
    stdin: Option<ChildStdin>,
    /// tansu's own process id (not the shell's).
    tansu_pid: Option<u32>,
    starts: u32,
    /// Started with `--authentication`: clients must authenticate with SASL (SCRAM).
    authentication: bool,
}

impl TansuBroker {
    /// Starts a broker on a free port in a fresh temporary directory and waits until it answers
    /// an ApiVersions request.
    ///
    /// # Panics
    /// If tansu cannot be found, or does not come up within 30 s.
    pub fn start(storage: Storage) -> TansuBroker {
        Self::start_with(storage, None)
    }

    /// As [`start`](Self::start), but the broker tells clients (in Metadata and FindCoordinator
    /// answers) that it is at `127.0.0.1:advertised_port`, while it listens on a port of its
    /// own ([`port`](Self::port)). Put a proxy on the advertised port, forwarding to
    /// [`addr`](Self::addr), and every client that bootstraps from the proxy stays behind it
    /// (see [`FaultProxy`](super::proxy::FaultProxy)). The fixture's own requests (readiness,
    /// topic creation) go to the real port.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_advertising(storage: Storage, advertised_port: u16) -> TansuBroker {
        Self::start_with(storage, Some(advertised_port))
    }

    fn start_with(storage: Storage, advertised_port: Option<u16>) -> TansuBroker {
        let binary = find_tansu();
        let dir = tempfile::Builder::new()
            .prefix("konsumer-tansu-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tansu fixture: cannot create a temporary directory: {e}"));
        let mut broker = TansuBroker {
            binary,
            storage,
            port: 0,
            advertised_port,
            dir,
            shell: Mutex::new(None),
            stdin: None,
            tansu_pid: None,
            starts: 0,
            authentication: false,
        };
        // The free port may be taken by someone else between our probe and tansu's bind:
        // then try another one.
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            broker.port = free_port();
            match broker.try_start() {
                Ok(()) => return broker,
                Err(StartError::PortTaken) if attempt < ATTEMPTS => {
                    broker.reap();
                    continue;
                }
                Err(e) => broker.fail_start(e),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The port the broker listens on (and advertises, unless started with
    /// [`start_advertising`](Self::start_advertising)), on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port the broker names in its Metadata answers.
    pub fn advertised_port(&self) -> u16 {
        self.advertised_port.unwrap_or(self.port)
    }

    /// The address the broker listens on, `127.0.0.1:port()`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `"127.0.0.1:PORT"`, the bootstrap address for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The storage engine this broker was started with.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// The broker's temporary directory (its working directory; the sqlite database lives here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// tansu's stdout and stderr, appended over restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// tansu's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.tansu_pid
    }

    /// Whether the tansu process is still alive (it may have exited on its own).
    pub fn is_running(&self) -> bool {
        match self.shell().as_mut() {
            None => false,
            Some(shell) => matches!(shell.try_wait(), Ok(None)),
        }
    }

    fn shell(&self) -> MutexGuard<'_, Option<Child>> {
        self.shell.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a SCRAM user with `tansu user create` (`mechanism`: `scram256` or `scram512`).
    /// tansu stores users in its storage engine, so use [`Storage::Sqlite`] and create users
    /// before [`require_authentication`](Self::require_authentication): with authentication
    /// on, tansu's own command cannot log in.
    ///
    /// # Panics
    /// If the command fails (its output is in the message).
    pub fn create_user(&self, name: &str, password: &str, mechanism: &str) {
        let broker_url = format!("tcp://127.0.0.1:{}", self.port);
        let output = Command::new(&self.binary)
            .args(["user", "create", "--broker", &broker_url])
            .args(["--mechanism", mechanism, name, password])
            .current_dir(self.dir.path())
            .envs(tansu_env())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("tansu fixture: cannot run tansu user create: {e}"));
        if !output.status.success() {
            panic!(
                "tansu fixture: `tansu user create {name}` failed ({}):\n--- stdout\n{}\n--- \
                 stderr\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
        }
    }

    /// Restarts the broker with `--authentication` (same port and storage): from then on
    /// every client must authenticate with SASL SCRAM as a user made by
    /// [`create_user`](Self::create_user).
    ///
    /// # Panics
    /// As [`start_again`](Self::start_again).
    pub fn require_authentication(&mut self) {
        self.authentication = true;
        self.start_again();
    }

    /// Creates a topic with `tansu topic create`, then waits until a Metadata request shows it
    /// with all its partitions led by a broker.
    ///
    /// # Panics
    /// If the command fails (its output is in the message; tansu exits with 1 when the topic
    /// already exists) or the topic does not appear in time.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let broker_url = format!("tcp://127.0.0.1:{}", self.port);
        let output = Command::new(&self.binary)
            .args(["topic", "create", name])
            .arg("--partitions")
            .arg(partitions.to_string())
            .arg("--broker")
            .arg(&broker_url)
            .current_dir(self.dir.path())
            .envs(tansu_env())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "tansu fixture: cannot run {} topic create: {e}",
                    self.binary.display()
                )
            });
        if !output.status.success() {
            panic!(
                "tansu fixture: `tansu topic create {name} --partitions {partitions} --broker \
                 {broker_url}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n--- broker log \
                 ({})\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log_path().display(),
                self.log_tail(),
            );
        }

        let deadline = Instant::now() + TOPIC_TIMEOUT;
        loop {
            let last = match topic_metadata(self.addr(), name) {
                Ok(meta) => match check_topic(&meta, name, partitions) {
                    Ok(()) => return,
                    Err(e) => e,
                },
                Err(e) => format!("metadata request failed: {e}"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "tansu fixture: topic {name:?} was created but is not usable after {:?}: \
                     {last}\n--- broker log ({})\n{}",
                    TOPIC_TIMEOUT,
                    self.log_path().display(),
                    self.log_tail()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Stops the broker: interrupts tansu, kills it if it has not exited within 5 s, and waits
    /// until the port no longer accepts connections. Does nothing if it is already stopped.
    ///
    /// # Panics
    /// If the port still accepts connections 10 s after tansu is gone.
    pub fn stop(&mut self) {
        if self.shell().is_none() {
            return;
        }
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepts_connections(self.addr()) {
            if Instant::now() >= deadline {
                panic!(
                    "tansu fixture: tansu was stopped but 127.0.0.1:{} still accepts connections",
                    self.port
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Starts the broker again after [`stop`](Self::stop): same port, same directory, so a
    /// [`Storage::Sqlite`] broker keeps its data. Stops the running broker first if need be.
    ///
    /// # Panics
    /// If the broker does not come up within 30 s (for example when another process took the port).
    pub fn start_again(&mut self) {
        self.stop();
        if let Err(e) = self.try_start() {
            self.fail_start(e);
        }
    }

    fn try_start(&mut self) -> Result<(), StartError> {
        self.starts += 1;
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| StartError::Spawn(format!("cannot open {}: {e}", log_path.display())))?;
        let _ = writeln!(
            log,
            "=== konsumer testkit: start #{} of {} on 127.0.0.1:{} advertising port {} ({:?}) ===",
            self.starts,
            self.binary.display(),
            self.port,
            self.advertised_port(),
            self.storage
        );
        let log_err = log
            .try_clone()
            .map_err(|e| StartError::Spawn(format!("cannot clone the log file handle: {e}")))?;
        let _ = fs::remove_file(self.dir.path().join(PID_FILE));

        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port());
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("tansu-watchdog")
            .arg(&self.binary)
            .arg("--listener-url")
            .arg(&listener)
            .arg("--advertised-listener-url")
            .arg(&advertised)
            .arg("--storage-engine")
            .arg(self.storage.engine_url())
            .args(self.authentication.then_some("--authentication"))
            .current_dir(self.dir.path())
            .envs(tansu_env())
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        match env::var("KONSUMER_TANSU_LOG") {
            Ok(filter) => command.env("RUST_LOG", filter),
            Err(_) => command.env_remove("RUST_LOG"),
        };
        let mut shell = command
            .spawn()
            .map_err(|e| StartError::Spawn(format!("cannot spawn sh: {e}")))?;
        self.stdin = shell.stdin.take();
        *self.shell() = Some(shell);
        self.tansu_pid = None;

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.tansu_pid.is_none() {
                self.tansu_pid = fs::read_to_string(self.dir.path().join(PID_FILE))
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            }
            let exited = self
                .shell()
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten());
            if let Some(status) = exited {
                *self.shell() = None;
                self.stdin = None;
                self.tansu_pid = None;
                return Err(if self.log_tail().contains("AddrInUse") {
                    StartError::PortTaken
                } else {
                    StartError::Exited(status.to_string())
                });
            }
            let last = match api_versions(self.addr()) {
                Ok(()) if self.tansu_pid.is_some() => return Ok(()),
                Ok(()) => "answered, but the pid file is missing".to_owned(),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(StartError::Timeout(last));
            }
            thread::sleep(POLL);
        }
    }

    fn fail_start(&mut self, error: StartError) -> ! {
        self.terminate();
        let what = match error {
            StartError::Spawn(e) => format!("could not start: {e}"),
            StartError::PortTaken => format!("port {} is already in use", self.port),
            StartError::Exited(status) => format!("tansu exited during startup ({status})"),
            StartError::Timeout(last) => format!(
                "tansu did not answer ApiVersions on 127.0.0.1:{} within {:?} (last: {last})",
                self.port, START_TIMEOUT
            ),
        };
        panic!(
            "tansu fixture: {what}\nbinary: {}\n--- broker log ({})\n{}",
            self.binary.display(),
            self.log_path().display(),
            self.log_tail()
        );
    }

    /// Ends tansu and reaps the watchdog shell; never panics (used by drop).
    fn terminate(&mut self) {
        // EOF on the watchdog's stdin: it interrupts tansu (SIGINT: tansu exits at once).
        self.stdin = None;
        let Some(mut shell) = self.shell().take() else {
            return;
        };
        if let Some(pid) = self.tansu_pid {
            signal(pid, "-INT");
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match shell.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    if let Some(pid) = self.tansu_pid {
                        signal(pid, "-KILL");
                    }
                    let _ = shell.kill();
                    let _ = shell.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
            }
        }
        // The shell exits only after `wait` returned for tansu, so tansu is gone and reaped; if
        // the shell had to be killed instead, tansu got SIGKILL just before.
        self.tansu_pid = None;
    }

    /// Forgets a broker whose process has already exited.
    fn reap(&mut self) {
        self.terminate();
    }

    fn log_tail(&self) -> String {
        const TAIL: usize = 8 * 1024;
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path()) {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            let start = bytes.len().saturating_sub(TAIL);
            text = String::from_utf8_lossy(&bytes[start..]).into_owned();
            if start > 0 {
                text.insert_str(0, "[...]\n");
            }
        }
        if text.trim().is_empty() {
            text = "(empty)".into();
        }
        text
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.terminate();
    }
}

#[derive(Debug)]
enum StartError {
    Spawn(String),
    PortTaken,
    Exited(String),
    Timeout(String),
}

/// Sends a signal with `kill(1)`: std has no portable way, and this crate has no libc dependency.
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Environment for tansu processes: tansu also reads a `.env` file from its working directory and
/// the variables behind its flags (`LISTENER_URL`, `STORAGE_ENGINE`, ...); flags win over them.
fn tansu_env() -> Vec<(&'static str, &'static str)> {
    vec![("NO_COLOR", "1")]
}

/// The tansu binary: `$KONSUMER_TANSU`, the install cache, or `PATH`.
pub fn find_tansu() -> PathBuf {
    if let Some(path) = env::var_os("KONSUMER_TANSU").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return path;
        }
        panic!(
            "tansu fixture: KONSUMER_TANSU={} is not a file. Run `bash scripts/test.sh` (it \
             installs tansu {TANSU_VERSION} and sets KONSUMER_TANSU) or \
             `bash scripts/install-tansu.sh`.",
            path.display()
        );
    }
    let cache = env::var_os("KONSUMER_CACHE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cache/konsumer")));
    let cached = cache.map(|c| c.join(format!("tansu-{TANSU_VERSION}/bin/tansu")));
    if let Some(path) = cached.as_ref().filter(|p| p.is_file()) {
        return path.clone();
    }
    if let Some(paths) = env::var_os("PATH") {
        for dir in env::split_paths(&paths) {
            let path = dir.join("tansu");
            if path.is_file() {
                return path;
            }
        }
    }
    panic!(
        "tansu fixture: the tansu broker was not found (looked at $KONSUMER_TANSU, {}, and PATH). \
         Run `bash scripts/test.sh`, which installs tansu {TANSU_VERSION} into the cache (about 7 \
         minutes the first time), or `bash scripts/install-tansu.sh`.",
        cached.map_or_else(
            || "~/.cache/konsumer/tansu-0.6.0/bin/tansu".into(),
            |p| p.display().to_string()
        )
    );
}

/// A port that was free a moment ago: bind port 0, read it, release it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("tansu fixture: cannot bind 127.0.0.1:0: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("tansu fixture: local_addr: {e}"))
        .port()
}

fn accepts_connections(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        Ok(stream) => {
            let _ = stream.shutdown(Shutdown::Both);
            true
        }
        Err(_) => false,
    }
}

/// Sends one request on a fresh connection and decodes the response.
/// `response_header_version` is 0 for every non-flexible version (and always for ApiVersions).
fn round_trip<Req: Encodable, Resp: Decodable>(
    addr: SocketAddr,
    api_key: ApiKey,
    version: i16,
    request: &Req,
) -> Result<Resp, String> {
    const CORRELATION_ID: i32 = 1;
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(CORRELATION_ID)
        .with_client_id(Some(StrBytes::from_static_str("konsumer-testkit")));
    let mut body = BytesMut::new();
    encode_request_header_into_buffer(&mut body, &header)
        .map_err(|e| format!("encoding the request header: {e}"))?;
    request
        .encode(&mut body, version)
        .map_err(|e| format!("encoding the request: {e}"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);

    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(2))))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| format!("socket options: {e}"))?;
    stream
        .write_all(&frame)
        .map_err(|e| format!("write: {e}"))?;
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .map_err(|e| format!("read size: {e}"))?;
    let size = i32::from_be_bytes(size);
    if !(4..=64 * 1024 * 1024).contains(&size) {
        return Err(format!("implausible response size {size}"));
    }
    let mut payload = vec![0u8; size as usize];
    stream
        .read_exact(&mut payload)
        .map_err(|e| format!("read response: {e}"))?;
    let _ = stream.shutdown(Shutdown::Both);

    let mut payload = Bytes::from(payload);
    let response_header =
        ResponseHeader::decode(&mut payload, api_key.response_header_version(version))
            .map_err(|e| format!("decoding the response header: {e}"))?;
    if response_header.correlation_id != CORRELATION_ID {
        return Err(format!(
            "correlation id {} in the response, expected {CORRELATION_ID}",
            response_header.correlation_id
        ));
    }
    Resp::decode(&mut payload, version).map_err(|e| format!("decoding the response: {e}"))
}

/// Readiness probe: ApiVersions v0 answered with error code 0.
fn api_versions(addr: SocketAddr) -> Result<(), String> {
    let response: ApiVersionsResponse =
        round_trip(addr, ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
    if response.error_code != 0 {
        return Err(format!("ApiVersions error code {}", response.error_code));
    }
    if response.api_keys.is_empty() {
        return Err("ApiVersions listed no APIs".into());
    }
    Ok(())
}

fn topic_metadata(addr: SocketAddr, topic: &str) -> Result<MetadataResponse, String> {
    let topic = MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.to_owned()))));
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![topic]));
    // v4: the first version that can say "do not create the topic" (not flexible yet).
    round_trip(addr, ApiKey::Metadata, 4, &request)
}

fn check_topic(meta: &MetadataResponse, name: &str, partitions: i32) -> Result<(), String> {
    let topic = meta
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
        .ok_or_else(|| format!("topic {name:?} is not in the metadata"))?;
    if topic.error_code != 0 {
        return Err(format!("topic error code {}", topic.error_code));
    }
    if topic.partitions.len() != partitions as usize {
        return Err(format!(
            "{} partitions in the metadata, expected {partitions}",
            topic.partitions.len()
        ));
    }
    for p in &topic.partitions {
        if p.error_code != 0 || p.leader_id.0 < 0 {
            return Err(format!(
                "partition {}: error code {}, leader {}",
                p.partition_index, p.error_code, p.leader_id.0
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a process exists and is not a zombie (Linux; elsewhere: assume gone).
    fn alive(pid: u32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                // "pid (comm) S ...": the state follows the last ')'.
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                !state.starts_with('Z') && !state.starts_with('X')
            })
            .unwrap_or(false)
    }

    fn partitions(broker: &TansuBroker, topic: &str) -> usize {
        let meta = topic_metadata(broker.addr(), topic).expect("metadata");
        meta.topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .map_or(0, |t| t.partitions.len())
    }

    #[test]
    fn tansu_memory_broker_starts_creates_topics_stops_and_restarts() {
        let mut broker = TansuBroker::start(Storage::Memory);
        let port = broker.port();
        assert_eq!(broker.bootstrap(), format!("127.0.0.1:{port}"));
        assert!(broker.is_running());
        assert!(api_versions(broker.addr()).is_ok());

        broker.create_topic("fixture-topic", 3);
        assert_eq!(partitions(&broker, "fixture-topic"), 3);

        // A client connection left open must not hold the broker up.
        let idle_client = TcpStream::connect(broker.addr()).expect("connect");
        let pid = broker.pid().expect("tansu pid");
        let stopping = Instant::now();
        broker.stop();
        assert!(
            stopping.elapsed() < STOP_GRACE,
            "stop took {:?}: tansu ignored SIGINT and had to be killed",
            stopping.elapsed()
        );
        drop(idle_client);
        assert!(!broker.is_running());
        assert!(!accepts_connections(broker.addr()));
        assert!(!alive(pid), "tansu process {pid} still exists after stop");
        broker.stop(); // idempotent

        broker.start_again();
        assert_eq!(broker.port(), port);
        assert!(broker.is_running());
        assert!(api_versions(broker.addr()).is_ok());
        // Memory storage starts empty again; creating the topic anew works.
        assert_eq!(partitions(&broker, "fixture-topic"), 0);
        broker.create_topic("fixture-topic", 3);
        assert_eq!(partitions(&broker, "fixture-topic"), 3);

        let log = fs::read_to_string(broker.log_path()).expect("log");
        assert!(log.contains("start #2"), "log: {log}");
    }

    #[test]
    fn tansu_behind_a_proxy_advertises_the_proxy_port() {
        let proxy = crate::testkit::proxy::FaultProxy::start().expect("proxy");
        let broker = TansuBroker::start_advertising(Storage::Memory, proxy.port());
        proxy.set_target(broker.addr());
        assert_eq!(broker.advertised_port(), proxy.port());
        assert_ne!(broker.port(), proxy.port());
        broker.create_topic("advertised", 1);
        // Asked directly or through the proxy, the broker names the proxy's port.
        for addr in [broker.addr(), proxy.addr()] {
            let meta = topic_metadata(addr, "advertised").expect("metadata");
            let ports: Vec<i32> = meta.brokers.iter().map(|b| b.port).collect();
            assert_eq!(ports, [i32::from(proxy.port())], "asked at {addr}");
        }
        assert!(proxy.accepted() >= 1);
    }

    #[test]
    fn tansu_sqlite_broker_keeps_topics_across_restart() {
        let mut broker = TansuBroker::start(Storage::Sqlite);
        broker.create_topic("kept", 2);
        assert!(broker.dir().join("tansu.db").exists());
        broker.stop();
        broker.start_again();
        assert_eq!(partitions(&broker, "kept"), 2);
        assert_eq!(partitions(&broker, "never-created"), 0);
    }

    #[test]
    fn tansu_is_killed_when_the_fixture_is_dropped() {
        let broker = TansuBroker::start(Storage::Memory);
        let addr = broker.addr();
        let pid = broker.pid().expect("pid");
        drop(broker);
        assert!(!accepts_connections(addr));
        assert!(!alive(pid), "tansu process {pid} still exists after drop");
    }

    #[test]
    fn tansu_is_killed_when_the_test_process_dies() {
        // Simulate the test process vanishing: only the watchdog's stdin reaching EOF tells the
        // shell; here the fixture's pipe is closed without running terminate().
        let mut broker = TansuBroker::start(Storage::Memory);
        let addr = broker.addr();
        let pid = broker.pid().expect("pid");
        let mut shell = broker.shell().take().expect("shell");
        broker.stdin = None; // EOF, as when the process dies
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(shell.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "watchdog did not stop tansu");
            thread::sleep(POLL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while accepts_connections(addr) {
            assert!(Instant::now() < deadline, "port still open");
            thread::sleep(POLL);
        }
        assert!(!alive(pid), "tansu process {pid} survived its watchdog");
    }
}
