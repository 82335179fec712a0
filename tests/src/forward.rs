//! A TCP forwarder from the root namespace's loopback into a lab namespace.
//!
//! The API server lives in the lab's `api` namespace and the root namespace has no address on the
//! segment (by design). The test process still needs a client: it listens on `127.0.0.1:<port>` in
//! the root namespace and opens each upstream connection from a thread that has entered the target
//! namespace (`setns` is per thread; a socket belongs to the namespace it was created in).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow};
use nix::sched::{CloneFlags, setns};

type DialJob = mpsc::Sender<std::io::Result<TcpStream>>;

/// Forwards `127.0.0.1:<local port>` to `target` inside a namespace until dropped.
#[derive(Debug)]
pub struct Forwarder {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Forwarder {
    pub fn start(netns: &str, target: SocketAddr) -> anyhow::Result<Forwarder> {
        let dial = dialer(netns, target)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let accept = std::thread::Builder::new()
            .name("lab-forward".into())
            .spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((down, _)) => {
                            let _ = down.set_nonblocking(false);
                            let (tx, rx) = mpsc::channel();
                            if dial.send(tx).is_err() {
                                return;
                            }
                            let Ok(Ok(up)) = rx.recv() else { continue };
                            splice(down, up, &conns2);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })?;
        Ok(Forwarder {
            local,
            stop,
            conns,
            accept: Some(accept),
        })
    }

    /// The loopback address to connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        if let Ok(conns) = self.conns.lock() {
            for c in conns.iter() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A thread living inside `netns` that opens connections to `target` on request.
fn dialer(netns: &str, target: SocketAddr) -> anyhow::Result<mpsc::Sender<DialJob>> {
    let path = format!("/run/netns/{netns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    let (tx, rx) = mpsc::channel::<DialJob>();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("lab-dialer".into())
        .spawn(move || {
            let entered = setns(&file, CloneFlags::CLONE_NEWNET);
            let ok = entered.is_ok();
            let _ = ready_tx.send(entered);
            if !ok {
                return;
            }
            for reply in rx {
                let _ = reply.send(TcpStream::connect_timeout(&target, Duration::from_secs(5)));
            }
        })?;
    ready_rx
        .recv()
        .map_err(|_| anyhow!("dialer thread died"))?
        .with_context(|| format!("entering network namespace {netns}"))?;
    Ok(tx)
}

/// Copies bytes both ways between two sockets on two threads.
fn splice(a: TcpStream, b: TcpStream, conns: &Arc<Mutex<Vec<TcpStream>>>) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    if let Ok(mut c) = conns.lock() {
        // Keep clones so Drop can cut live connections; forget closed ones.
        c.retain(|s| s.peer_addr().is_ok());
        if let (Ok(x), Ok(y)) = (a.try_clone(), b.try_clone()) {
            c.push(x);
            c.push(y);
        }
    }
    std::thread::spawn(move || pump(a, b));
    std::thread::spawn(move || pump(b2, a2));
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// Relays every TCP connection accepted on `listen` to `target`, in the calling process's
/// namespace, until killed (`ferrolb-lab forward`, run inside a node namespace: it stands for the
/// node's own kube-apiserver on 127.0.0.1:6443, backed by the lab's real one).
pub fn relay(listen: SocketAddr, target: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    for down in listener.incoming() {
        let Ok(down) = down else { continue };
        match TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
            Ok(up) => splice(down, up, &conns),
            Err(_) => {
                let _ = down.shutdown(Shutdown::Both);
            }
        }
    }
    Ok(())
}
