// SPDX-License-Identifier: GPL-2.0

//! A minimal ivshmem-doorbell server (QEMU `docs/specs/ivshmem-spec.rst`),
//! one per QEMU: the only client gets id 0 (so it can be `master=on`).
//!
//! Protocol: 8-byte little-endian signed messages on a unix stream socket,
//! some carrying one fd in `SCM_RIGHTS`:
//! 1. the protocol version, 0 (no fd);
//! 2. the client's id (no fd);
//! 3. -1 with the shared-memory fd;
//! 4. for every other peer: its id with one eventfd per vector (none here);
//! 5. the client's own id with one eventfd per vector, in vector order.
//!
//! Ringing vector k = writing a `u64` 1 to the client's k-th eventfd: QEMU
//! raises MSI-X vector k (if the guest enabled MSI-X).

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: i64 = 0;

/// One server message: a value and maybe an fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub value: i64,
    pub fd: Option<RawFd>,
}

/// The 8 bytes on the wire.
pub fn encode(value: i64) -> [u8; 8] {
    value.to_le_bytes()
}

/// The setup messages for a new client with no other peers.
pub fn setup_messages(client_id: i64, shm_fd: RawFd, own_vectors: &[RawFd]) -> Vec<Msg> {
    let mut v = vec![
        Msg {
            value: PROTOCOL_VERSION,
            fd: None,
        },
        Msg {
            value: client_id,
            fd: None,
        },
        Msg {
            value: -1,
            fd: Some(shm_fd),
        },
    ];
    v.extend(own_vectors.iter().map(|&fd| Msg {
        value: client_id,
        fd: Some(fd),
    }));
    v
}

/// Sends one message with `sendmsg(2)`, the fd (if any) as `SCM_RIGHTS`.
pub fn send_msg(sock: RawFd, m: &Msg) -> Result<()> {
    let bytes = encode(m.value);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // Room for one fd, aligned for cmsghdr.
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data; zeroed is a valid start.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if let Some(fd) = m.fd {
        // SAFETY: CMSG_* on a buffer large enough for one int (checked by CMSG_SPACE).
        unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            assert!(space <= std::mem::size_of_val(&cbuf));
            hdr.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
            hdr.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&hdr);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd);
        }
    }
    // SAFETY: hdr points at live buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(sock, &hdr, libc::MSG_NOSIGNAL) };
    if n != 8 {
        return Err(std::io::Error::last_os_error()).context("sendmsg to the ivshmem client");
    }
    Ok(())
}

/// Receives one message (used by the tests, playing QEMU).
#[cfg_attr(not(test), allow(dead_code))]
pub fn recv_msg(sock: RawFd) -> Result<(i64, Option<OwnedFd>)> {
    let mut bytes = [0u8; 8];
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr() as *mut libc::c_void,
        iov_len: 8,
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: as in send_msg.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    hdr.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    // SAFETY: buffers live for the call.
    let n = unsafe { libc::recvmsg(sock, &mut hdr, libc::MSG_CMSG_CLOEXEC) };
    if n != 8 {
        bail!("recvmsg returned {n}: {}", std::io::Error::last_os_error());
    }
    let mut fd = None;
    // SAFETY: walking the control messages the kernel filled in.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&hdr);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS
        {
            let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd);
            fd = Some(OwnedFd::from_raw_fd(raw));
        }
    }
    Ok((i64::from_le_bytes(bytes), fd))
}

/// Creates an eventfd.
pub fn eventfd() -> Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("eventfd");
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes `1` to an eventfd.
pub fn ring_fd(fd: RawFd) -> Result<()> {
    let one = 1u64.to_ne_bytes();
    // SAFETY: 8-byte write from a live buffer.
    let n = unsafe { libc::write(fd, one.as_ptr() as *const libc::c_void, 8) };
    if n != 8 {
        return Err(std::io::Error::last_os_error()).context("writing the doorbell eventfd");
    }
    Ok(())
}

/// A running doorbell server for one QEMU.
pub struct DoorbellServer {
    path: PathBuf,
    vectors: Vec<OwnedFd>,
    client: Arc<Mutex<Option<UnixStream>>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl DoorbellServer {
    /// Listens on `sock` (before QEMU starts); the shared memory handed out is
    /// `shm_path`. The first client gets id 0 and `nvectors` eventfds.
    pub fn start(sock: &Path, shm_path: &Path, nvectors: usize) -> Result<Self> {
        let _ = std::fs::remove_file(sock);
        let listener = UnixListener::bind(sock)
            .with_context(|| format!("binding the ivshmem server socket {}", sock.display()))?;
        let shm = OpenOptions::new()
            .read(true)
            .write(true)
            .open(shm_path)
            .with_context(|| format!("opening shared memory {}", shm_path.display()))?;
        let vectors = (0..nvectors)
            .map(|_| eventfd())
            .collect::<Result<Vec<_>>>()?;
        // The fds stay open as long as `self.vectors` (the server outlives its thread).
        let raw: Vec<RawFd> = vectors.iter().map(|f| f.as_raw_fd()).collect();
        let client = Arc::new(Mutex::new(None));
        let client2 = client.clone();
        let thread = std::thread::spawn(move || -> Result<()> {
            let (stream, _) = listener.accept().context("accepting the ivshmem client")?;
            for m in setup_messages(0, shm.as_raw_fd(), &raw) {
                send_msg(stream.as_raw_fd(), &m)?;
            }
            // Keep the connection open for QEMU's lifetime: closing it would
            // look like the server going away.
            *client2.lock().unwrap() = Some(stream);
            Ok(())
        });
        Ok(Self {
            path: sock.to_path_buf(),
            vectors,
            client,
            thread: Some(thread),
        })
    }

    /// Whether the client connected and got its setup.
    pub fn client_connected(&self) -> bool {
        self.client.lock().unwrap().is_some()
    }

    /// Rings vector `k` of the client.
    pub fn ring(&self, k: usize) -> Result<()> {
        let fd = self
            .vectors
            .get(k)
            .with_context(|| format!("no vector {k}"))?;
        ring_fd(fd.as_raw_fd())
    }

    /// Whether QEMU has consumed every ring of vector `k` (the eventfd's
    /// counter is back to 0, i.e. not readable) within `timeout`. Does not
    /// consume anything itself.
    pub fn wait_consumed(&self, k: usize, timeout: Duration) -> Result<bool> {
        let fd = self
            .vectors
            .get(k)
            .with_context(|| format!("no vector {k}"))?;
        let t = std::time::Instant::now();
        loop {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, zero timeout.
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            if n == 0 {
                return Ok(true);
            }
            if t.elapsed() >= timeout {
                return Ok(false);
            }
            std::hint::spin_loop();
        }
    }
}

impl Drop for DoorbellServer {
    fn drop(&mut self) {
        // An unaccepted listener thread stays blocked in accept(); wake it.
        if self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            let _ = UnixStream::connect(&self.path);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn encoding_is_8_bytes_little_endian() {
        assert_eq!(encode(0), [0; 8]);
        assert_eq!(encode(1), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode(-1), [0xff; 8]);
        assert_eq!(encode(0x0102), [2, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn setup_sequence_order() {
        let m = setup_messages(0, 10, &[20, 21]);
        assert_eq!(
            m,
            vec![
                Msg { value: 0, fd: None },
                Msg { value: 0, fd: None },
                Msg {
                    value: -1,
                    fd: Some(10)
                },
                Msg {
                    value: 0,
                    fd: Some(20)
                },
                Msg {
                    value: 0,
                    fd: Some(21)
                },
            ]
        );
        let m = setup_messages(3, 10, &[20]);
        assert_eq!(m[1], Msg { value: 3, fd: None });
        assert_eq!(
            m[3],
            Msg {
                value: 3,
                fd: Some(20)
            }
        );
    }

    #[test]
    fn server_hands_out_shm_and_a_working_doorbell() {
        let dir = std::env::temp_dir();
        let sock = dir.join(format!("mth-ivsh-{}.sock", std::process::id()));
        let shm = dir.join(format!("mth-ivsh-{}.shm", std::process::id()));
        std::fs::write(&shm, b"MIGT-shared").unwrap();
        let srv = DoorbellServer::start(&sock, &shm, 1).unwrap();
        let c = UnixStream::connect(&sock).unwrap();
        let fd = c.as_raw_fd();
        let (v, f) = recv_msg(fd).unwrap();
        assert_eq!((v, f.is_none()), (0, true), "version");
        let (v, f) = recv_msg(fd).unwrap();
        assert_eq!((v, f.is_none()), (0, true), "client id");
        let (v, f) = recv_msg(fd).unwrap();
        assert_eq!(v, -1);
        let mut text = String::new();
        std::fs::File::from(f.expect("shm fd"))
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "MIGT-shared");
        let (v, f) = recv_msg(fd).unwrap();
        assert_eq!(v, 0);
        let efd = std::fs::File::from(f.expect("vector 0 eventfd"));
        srv.ring(0).unwrap();
        srv.ring(0).unwrap();
        let mut b = [0u8; 8];
        (&efd).read_exact(&mut b).unwrap();
        assert_eq!(
            u64::from_ne_bytes(b),
            2,
            "two rings accumulate in the eventfd"
        );
        assert!(srv.ring(1).is_err());
        for _ in 0..100 {
            if srv.client_connected() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(srv.client_connected());
        drop(srv);
        assert!(!sock.exists());
        std::fs::remove_file(&shm).unwrap();
    }
}
