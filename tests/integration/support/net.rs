//! Network pieces of the tests' own, on loopback only: an HTTP forward proxy that records what
//! goes through it, and a TCP forwarder that can be opened late (an API server that comes up
//! after the controller).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request a [`Proxy`] was asked to pass on.
#[derive(Debug, Clone)]
pub struct Proxied {
    /// `CONNECT`, or the method of a request in absolute form (`POST`).
    pub method: String,
    /// `host:port` for a CONNECT, the absolute URL otherwise.
    pub target: String,
    pub proxy_authorization: Option<String>,
}

/// An HTTP/1.1 forward proxy on 127.0.0.1: a request in absolute form (`POST http://host/path`)
/// is passed on in origin form, a CONNECT opens a tunnel. It goes to loopback addresses only
/// (anything else is answered 403), and records every request.
pub struct Proxy {
    pub addr: SocketAddr,
    proxied: Arc<Mutex<Vec<Proxied>>>,
}

impl Proxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let proxied = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&proxied);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move { proxy(conn, log).await });
            }
        });
        Self { addr, proxied }
    }

    /// Its URL, `http://127.0.0.1:PORT`, with `user:password@` when given.
    pub fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(c) => format!("http://{c}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// The requests it was asked to pass on so far.
    pub fn proxied(&self) -> Vec<Proxied> {
        self.proxied.lock().expect("proxy log").clone()
    }
}

/// The head of an HTTP request (up to its blank line) and whatever was read after it.
async fn read_head(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            return Some((head, buf[i + 4..].to_vec()));
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `host:port` if it is on loopback (the only place a test may send traffic).
fn loopback(authority: &str) -> Option<String> {
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback.then(|| format!("{host}:{port}"))
}

async fn proxy(mut client: TcpStream, log: Arc<Mutex<Vec<Proxied>>>) {
    let Some((head, rest)) = read_head(&mut client).await else {
        return;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or("HTTP/1.1").to_string(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let proxy_authorization = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.clone());
    log.lock().expect("proxy log").push(Proxied {
        method: method.clone(),
        target: target.clone(),
        proxy_authorization,
    });
    // CONNECT host:port, or an absolute http:// URL: where to, and what to send first.
    let (authority, first) = if method == "CONNECT" {
        (target.clone(), None)
    } else {
        let Some(after) = target.strip_prefix("http://") else {
            let _ = client
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        };
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, "/"),
        };
        let mut head = format!("{method} {path} {version}\r\n");
        for (n, v) in &headers {
            if !n.eq_ignore_ascii_case("proxy-authorization")
                && !n.eq_ignore_ascii_case("proxy-connection")
            {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        head.push_str("\r\n");
        let mut first = head.into_bytes();
        first.extend_from_slice(&rest);
        (authority.to_string(), Some(first))
    };
    let upstream = match loopback(&authority) {
        Some(a) => TcpStream::connect(a).await.ok(),
        None => None,
    };
    let Some(mut upstream) = upstream else {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    match first {
        Some(first) => {
            if upstream.write_all(&first).await.is_err() {
                return;
            }
        }
        None => {
            let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
            if client.write_all(established).await.is_err()
                || upstream.write_all(&rest).await.is_err()
            {
                return;
            }
        }
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Passes every connection accepted by `listener` on to `to`, byte for byte (TLS included).
pub fn forward(listener: TcpListener, to: SocketAddr) {
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut upstream) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                }
            });
        }
    });
}
