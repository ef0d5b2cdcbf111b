//! Private Kafka brokers for tests that must not disturb the shared one: a tansu instance of
//! their own (the binary `scripts/stack.sh` installed), optionally secured — TLS on the wire by
//! a real OpenSSL terminator (socat, since tansu 0.6 cannot start its own TLS listener),
//! client certificates required (mTLS), and SASL/SCRAM users created through Kafka's own
//! AlterUserScramCredentials API.

use super::{wait_for, Cluster};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The tansu binary (`SLA_TANSU_BIN`, else where `scripts/stack.sh` installed it).
pub fn tansu_binary() -> String {
    if let Ok(bin) = std::env::var("SLA_TANSU_BIN") {
        return bin;
    }
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh"))
        .args(["bin", "kafka"])
        .output()
        .expect("running scripts/stack.sh bin kafka");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(what: &str, port: u16) {
    wait_for(what, Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// Starts tansu listening on `port`, advertising `advertised` (host:port), with its sqlite
/// data in `dir`; `authentication` makes it require SASL.
pub fn start_tansu(dir: &Path, port: u16, advertised: &str, authentication: bool) -> Child {
    start_tansu_storing(dir, port, advertised, authentication, "sqlite://tansu.db")
}

/// Starts tansu on `port` (unsecured) running its maintenance — retention
/// (`cleanup.policy=delete`, `retention.ms`) among it — every `every` (e.g. `1s`; 10 min by
/// default).
pub fn start_tansu_maintained(dir: &Path, port: u16, every: &str) -> Child {
    let storage = format!("sqlite://tansu.db?maintenance_interval={every}");
    start_tansu_storing(dir, port, &format!("127.0.0.1:{port}"), false, &storage)
}

fn start_tansu_storing(
    dir: &Path,
    port: u16,
    advertised: &str,
    authentication: bool,
    storage: &str,
) -> Child {
    let mut command = Command::new(tansu_binary());
    command.current_dir(dir).args([
        "broker",
        "--listener-url",
        &format!("tcp://127.0.0.1:{port}"),
        "--advertised-listener-url",
        &format!("tcp://{advertised}"),
        "--storage-engine",
        storage,
    ]);
    if authentication {
        command.arg("--authentication");
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tansu (scripts/stack.sh up kafka installs it)");
    wait_for_port("private broker", port);
    index_headers(&dir.join("tansu.db"));
    child
}

/// Adds the index tansu 0.6's SQLite store lacks (record headers by record: without it every
/// fetched record scans every header stored), as `scripts/stack.sh` does for the stack's broker.
fn index_headers(database: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tansu-index-headers.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(database)
        .output()
        .expect("running python3 scripts/tansu-index-headers.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Test certificates made with the openssl command: a CA, a server certificate for 127.0.0.1
/// signed by it, a client certificate signed by it, and an unrelated CA.
pub struct Certificates {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here: trusting only it must fail.
    pub other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certificates {
    /// Generates the certificates in `dir`.
    pub fn generate(dir: &Path) -> Certificates {
        for ca in ["ca", "other-ca"] {
            openssl(
                dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=sla-monitor test {ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                ],
            );
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for who in ["server", "client"] {
            openssl(
                dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={who}"),
                    "-keyout",
                    &format!("{who}.key"),
                    "-out",
                    &format!("{who}.csr"),
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{who}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{who}.ext"),
                    "-out",
                    &format!("{who}.pem"),
                ],
            );
        }
        Certificates {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.pem"),
        }
    }
}

/// How the private broker's clients connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Plain TCP.
    Plaintext,
    /// TLS, server certificate only.
    Tls,
    /// TLS, and the client must present a certificate signed by the CA (mTLS).
    MutualTls,
}

/// A SCRAM user to create before authentication is switched on.
pub struct ScramUser<'a> {
    pub name: &'a str,
    pub password: &'a str,
    /// 256 or 512.
    pub sha: u16,
}

/// A running private broker, stopped on drop.
pub struct PrivateBroker {
    /// What clients bootstrap from (the TLS terminator's address when TLS is on).
    pub bootstrap: String,
    broker: Child,
    terminator: Option<Child>,
}

impl PrivateBroker {
    /// Starts tansu in `dir` behind `wire`; with `users`, SASL authentication is required and
    /// those SCRAM users exist. TLS needs `certificates`.
    pub fn start(
        dir: &Path,
        wire: Wire,
        certificates: Option<&Certificates>,
        users: &[ScramUser<'_>],
    ) -> PrivateBroker {
        let (internal, external) = (free_port(), free_port());
        let port = if wire == Wire::Plaintext {
            internal
        } else {
            external
        };
        let bootstrap = format!("127.0.0.1:{port}");
        if !users.is_empty() {
            // Users are created on the same storage before authentication is switched on.
            let internal_address = format!("127.0.0.1:{internal}");
            let mut setup = start_tansu(dir, internal, &internal_address, false);
            create_scram_users(&internal_address, users);
            setup.kill().unwrap();
            setup.wait().unwrap();
        }
        let broker = start_tansu(dir, internal, &bootstrap, !users.is_empty());
        let terminator = (wire != Wire::Plaintext).then(|| {
            let certificates = certificates.expect("TLS needs certificates");
            let verify = if wire == Wire::MutualTls {
                format!("verify=1,cafile={}", certificates.ca.display())
            } else {
                "verify=0".to_string()
            };
            let child = Command::new("socat")
                .arg(format!(
                    "OPENSSL-LISTEN:{external},bind=127.0.0.1,reuseaddr,fork,cert={},key={},{verify}",
                    certificates.server_cert.display(),
                    certificates.server_key.display()
                ))
                .arg(format!("TCP:127.0.0.1:{internal}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting socat (apt-get install socat)");
            wait_for_port("TLS terminator", external);
            child
        });
        PrivateBroker {
            bootstrap,
            broker,
            terminator,
        }
    }

    /// The cluster as a client with `properties` sees it.
    pub fn cluster(&self, properties: &[(&str, &str)]) -> Cluster {
        Cluster {
            brokers: self.bootstrap.clone(),
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.broker).chain(self.terminator.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `properties` as a `--kafka-config` file in `dir` and returns its path.
pub fn properties_file(dir: &Path, name: &str, properties: &[(&str, &str)]) -> PathBuf {
    let path = dir.join(name);
    let text: String = properties
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(&path, format!("# written by the test\n{text}")).unwrap();
    path
}

/// Creates SCRAM users through AlterUserScramCredentials (rdkafka has no safe wrapper for it,
/// so this calls librdkafka's C API directly).
fn create_scram_users(bootstrap: &str, users: &[ScramUser<'_>]) {
    use rdkafka::admin::AdminClient;
    use rdkafka::bindings as rd;
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let client = admin.inner().native_ptr();
    let names: Vec<CString> = users
        .iter()
        .map(|u| CString::new(u.name).unwrap())
        .collect();
    // SAFETY: every pointer passed is valid for the call; the queue, options, event and
    // alterations are destroyed exactly once below, after their last use.
    unsafe {
        let mut alterations: Vec<*mut rd::rd_kafka_UserScramCredentialAlteration_t> = users
            .iter()
            .zip(&names)
            .map(|(user, name)| {
                let mechanism = match user.sha {
                    256 => rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_256,
                    512 => rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_512,
                    other => panic!("SCRAM-SHA-{other} does not exist"),
                };
                rd::rd_kafka_UserScramCredentialUpsertion_new(
                    name.as_ptr(),
                    mechanism,
                    4096,
                    user.password.as_ptr(),
                    user.password.len(),
                    std::ptr::null(),
                    0,
                )
            })
            .collect();
        let queue = rd::rd_kafka_queue_new(client);
        let options = rd::rd_kafka_AdminOptions_new(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERUSERSCRAMCREDENTIALS,
        );
        rd::rd_kafka_AlterUserScramCredentials(
            client,
            alterations.as_mut_ptr(),
            alterations.len(),
            options,
            queue,
        );
        let event = rd::rd_kafka_queue_poll(queue, 30_000);
        assert!(!event.is_null(), "no answer to AlterUserScramCredentials");
        let error = rd::rd_kafka_event_error(event);
        assert_eq!(
            error,
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
            "AlterUserScramCredentials: {:?}",
            std::ffi::CStr::from_ptr(rd::rd_kafka_event_error_string(event))
        );
        let result = rd::rd_kafka_event_AlterUserScramCredentials_result(event);
        let mut count = 0;
        let responses = rd::rd_kafka_AlterUserScramCredentials_result_responses(result, &mut count);
        for i in 0..count {
            let response = *responses.add(i);
            let user_error = rd::rd_kafka_AlterUserScramCredentials_result_response_error(response);
            assert!(
                user_error.is_null()
                    || rd::rd_kafka_error_code(user_error)
                        == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
                "creating SCRAM user {:?}: {:?}",
                std::ffi::CStr::from_ptr(
                    rd::rd_kafka_AlterUserScramCredentials_result_response_user(response)
                ),
                std::ffi::CStr::from_ptr(rd::rd_kafka_error_string(user_error))
            );
        }
        rd::rd_kafka_event_destroy(event);
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_UserScramCredentialAlteration_destroy_array(
            alterations.as_mut_ptr(),
            alterations.len(),
        );
    }
}

/// A TLS broker, and a client properties file trusting another CA: every job must refuse it.
pub fn broker_with_an_untrusted_certificate(dir: &Path) -> (PrivateBroker, PathBuf) {
    let certificates = Certificates::generate(dir);
    let broker = PrivateBroker::start(dir, Wire::Tls, Some(&certificates), &[]);
    let config = properties_file(
        dir,
        "untrusted.properties",
        &[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", certificates.other_ca.to_str().unwrap()),
        ],
    );
    (broker, config)
}
