//! The client side of the protocol, for `upsched` and tests.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::{
    ErrorReply, FrameError, Operation, Outcome, Reply, Request, Response, encode_request,
    read_frame, read_frame_with_fd, write_frame,
};

/// Longest a client waits for an answer: a daemon that is alive answers well within it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no upschedd answers on {} ({reason}); start it with `systemctl start upschedd` \
         or, as root, `upschedd --socket {}`",
        socket.display(), socket.display()
    )]
    NoDaemon { socket: PathBuf, reason: String },
    #[error("upschedd on {}: {error}", socket.display())]
    Io { socket: PathBuf, error: FrameError },
    #[error("upschedd sent an unreadable answer: {0}")]
    BadAnswer(String),
    #[error("upschedd refused: {} ({:?})", .0.message, .0.kind)]
    Refused(ErrorReply),
}

/// A connection to the daemon.
pub struct Client {
    socket: PathBuf,
    stream: UnixStream,
    next_id: u64,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(socket).map_err(|e| ClientError::NoDaemon {
            socket: socket.to_path_buf(),
            reason: e.to_string(),
        })?;
        let io = |e: std::io::Error| ClientError::Io {
            socket: socket.to_path_buf(),
            error: e.into(),
        };
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        Ok(Client {
            socket: socket.to_path_buf(),
            stream,
            next_id: 1,
        })
    }

    /// Sends one request and returns its reply; an error answer is [`ClientError::Refused`].
    pub fn call(&mut self, operation: Operation) -> Result<Reply, ClientError> {
        self.exchange(operation, false).map(|(reply, _)| reply)
    }

    /// As [`Client::call`], for an operation whose answer brings an fd (`hint_map`): the fd,
    /// if one came.
    pub fn call_with_fd(
        &mut self,
        operation: Operation,
    ) -> Result<(Reply, Option<OwnedFd>), ClientError> {
        self.exchange(operation, true)
    }

    fn exchange(
        &mut self,
        operation: Operation,
        with_fd: bool,
    ) -> Result<(Reply, Option<OwnedFd>), ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let io = |error: FrameError| ClientError::Io {
            socket: self.socket.clone(),
            error,
        };
        write_frame(
            &mut self.stream,
            &encode_request(&Request { id, operation }),
        )
        .map_err(|e| io(e.into()))?;
        let (payload, fd) = if with_fd {
            read_frame_with_fd(&self.stream).map_err(io)?
        } else {
            (read_frame(&mut self.stream).map_err(io)?, None)
        };
        let response =
            Response::decode(&payload).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        match response.outcome {
            Outcome::Error(error) => Err(ClientError::Refused(error)),
            Outcome::Ok(_) if response.id != Some(id) => Err(ClientError::BadAnswer(format!(
                "answer for request {:?}, expected {id}",
                response.id
            ))),
            Outcome::Ok(reply) => Ok((reply, fd)),
        }
    }
}
