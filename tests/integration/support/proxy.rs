//! A loopback TCP proxy of the tests' own, put between a kube-reloader and the API server to
//! break the connections through it the ways networks do: [`FaultProxy::silence`] stops
//! forwarding on every open connection and keeps it open (a load balancer dropping an idle flow,
//! a peer gone without a FIN), [`FaultProxy::reset`] resets them all, and new connections always
//! pass. It runs on a thread and runtime of its own, so that a test blocking its own thread
//! (kubectl, a sleep) never stalls it by accident.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What becomes of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Pass,
    /// Open, and nothing forwarded either way.
    Silent,
    /// Reset (RST) towards the client, closed towards the server.
    Reset,
}

/// The proxy. Stops, dropping every connection, when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    connections: Arc<Mutex<Vec<watch::Sender<Fate>>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let connections: Arc<Mutex<Vec<watch::Sender<Fate>>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let conns = Arc::clone(&connections);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the proxy");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("address"))
                    .expect("send the address");
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let (fate, fate_rx) = watch::channel(Fate::Pass);
                        conns.lock().unwrap().push(fate);
                        tokio::spawn(forward(client, upstream, fate_rx));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection it still holds.
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy listens");
        Self {
            addr,
            connections,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Sets the fate of every open connection that still passes; how many there were.
    fn doom(&self, fate: Fate) -> usize {
        let mut conns = self.connections.lock().unwrap();
        conns.retain(|c| !c.is_closed());
        let mut n = 0;
        for c in conns.iter() {
            let now = *c.borrow();
            if now == Fate::Pass || (fate == Fate::Reset && now == Fate::Silent) {
                c.send_replace(fate);
                n += 1;
            }
        }
        n
    }

    /// Stops forwarding on every open connection, keeping each open. Connections made later
    /// pass. Returns how many were silenced.
    pub fn silence(&self) -> usize {
        self.doom(Fate::Silent)
    }

    /// Resets every open connection, silenced ones included. Returns how many.
    pub fn reset(&self) -> usize {
        self.doom(Fate::Reset)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Forwards one connection both ways until either side closes it or its fate says otherwise.
async fn forward(client: TcpStream, upstream: SocketAddr, mut fate: watch::Receiver<Fate>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client, mut server) = (client, server);
    let (mut up, mut down) = (vec![0u8; 16 << 10], vec![0u8; 16 << 10]);
    loop {
        tokio::select! {
            read = client.read(&mut up) => match read {
                Ok(n) if n > 0 => {
                    if server.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            read = server.read(&mut down) => match read {
                Ok(n) if n > 0 => {
                    if client.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            changed = fate.changed() => {
                if changed.is_err() {
                    return;
                }
                if *fate.borrow() != Fate::Pass {
                    break;
                }
            }
        }
    }
    // Silent: hold both sockets, read and forward nothing, until reset (or the proxy stops).
    while *fate.borrow() == Fate::Silent {
        if fate.changed().await.is_err() {
            return;
        }
    }
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "silent"))??;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn the_proxy_passes_silences_and_resets() {
        let proxy = FaultProxy::start(echo().await);
        let mut a = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut a).await.unwrap(), b"ping");

        assert_eq!(proxy.silence(), 1);
        // Open, and silent.
        let e = round_trip(&mut a).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        // A new connection passes.
        let mut b = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut b).await.unwrap(), b"ping");

        assert_eq!(proxy.reset(), 2);
        let mut buf = [0u8; 4];
        for s in [&mut a, &mut b] {
            let read = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
            let e = read.expect("an answer").expect_err("a reset");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
    }
}
