//! README's two-node setup as written: its `nginx` block of "Running several nodes", run by real
//! nginx (loopback ports, no TLS) in front of two latchd processes on one PostgreSQL database.
//! Requests through nginx reach both nodes; a logout through one is honoured through the other;
//! with one node killed, nginx's `proxy_next_upstream` sends everything to the other.

use std::fs;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::postgres;
use crate::support::proxy::{free_port, request_via};
use crate::support::{require, tool_path, Reply, TestServer, PASSWORD};

/// The `nginx` code block of README's "Running several nodes".
fn readme_block() -> String {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## Running several nodes\n")
        .nth(1)
        .expect("README has Running several nodes");
    let block = section
        .split("```nginx\n")
        .nth(1)
        .expect("an nginx block")
        .split("```")
        .next()
        .expect("closed");
    block.to_owned()
}

/// nginx in the foreground, stopped by PID on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn start(nodes: [SocketAddr; 2]) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let d = dir.path().display();
        let mut block = readme_block();
        for (from, to) in [("10.0.0.11:8080", nodes[0]), ("10.0.0.12:8080", nodes[1])] {
            assert!(block.contains(from), "README's block names {from}");
            block = block.replace(from, &to.to_string());
        }
        assert!(block.contains("listen 443 ssl;"));
        block = block.replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port};"));
        let config = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{block}}}\n"
        );
        let conf = dir.path().join("nginx.conf");
        fs::write(&conf, config).expect("write nginx.conf");
        let child = Command::new(tool_path("nginx").expect("nginx"))
            .env_clear()
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(format!("{d}/"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let nginx = Nginx { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        request_via(
            self.addr,
            method,
            &format!("http://auth.example.com{path}"),
            headers,
            body,
        )
    }

    fn verify(&self, access: &str) -> Reply {
        self.request(
            "GET",
            "/v1/auth/verify",
            &[("Authorization", &format!("Bearer {access}"))],
            b"",
        )
    }
}

#[test]
fn readmes_two_node_nginx_setup_serves_through_both_and_survives_one() {
    if !require("nginx", "nginx") {
        return;
    }
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let env = [
        ("LATCHD_DATABASE_URL", url.as_str()),
        ("LATCHD_TRUSTED_PROXIES", "127.0.0.1"),
    ];
    let a = TestServer::start_with(&env);
    let mut b = TestServer::start_with(&env);
    let nginx = Nginx::start([a.addr(), b.addr()]);
    let json_body = |value: serde_json::Value| value.to_string().into_bytes();
    let registered = nginx.request(
        "POST",
        "/v1/users",
        &[("Content-Type", "application/json")],
        &json_body(json!({"email": "lb@example.com", "password": PASSWORD})),
    );
    assert_eq!(registered.status, 201, "{}", registered.body);
    let login = || {
        let reply = nginx.request(
            "POST",
            "/v1/auth/login",
            &[("Content-Type", "application/json")],
            &json_body(json!({"email": "lb@example.com", "password": PASSWORD})),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["access_token"]
            .as_str()
            .expect("token")
            .to_owned()
    };
    // Round robin: twenty verifies land on both nodes, every one accepted.
    let access = login();
    for _ in 0..20 {
        assert_eq!(nginx.verify(&access).status, 200);
    }
    let served_by = |node: &TestServer| {
        node.log()
            .lines()
            .filter(|l| l.contains("path=/v1/auth/verify"))
            .count()
    };
    assert!(
        served_by(&a) > 0 && served_by(&b) > 0,
        "one node got every request"
    );
    // A logout through nginx (either node) is refused through nginx (both) within a second.
    let out = nginx.request(
        "POST",
        "/v1/auth/logout",
        &[("Authorization", &format!("Bearer {access}"))],
        b"",
    );
    assert_eq!(out.status, 204, "{}", out.body);
    let since = Instant::now();
    let mut refused_in_a_row = 0;
    while refused_in_a_row < 6 {
        if nginx.verify(&access).status == 401 {
            refused_in_a_row += 1;
        } else {
            refused_in_a_row = 0;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "not refused by both within 1 s"
        );
    }
    // Node B goes away: nginx sends everything to A.
    let live = login();
    b.stop_with_sigterm();
    for _ in 0..10 {
        let reply = nginx.verify(&live);
        assert_eq!(reply.status, 200, "with one node down: {}", reply.body);
    }
    drop(a);
}
