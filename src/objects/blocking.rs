//! An [`Object`] read from a blocking thread: the dataset readers decode on tokio's blocking
//! pool (never on the async workers that serve webhooks), and wait there for each read.

use std::io::Read;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::runtime::Handle;

use super::{Object, ObjectsError};

/// An object and the runtime its reads run on. Only for blocking threads: `block_on` from an
/// async worker would panic.
#[derive(Clone)]
pub struct Blocking {
    object: Arc<Object>,
    rt: Handle,
}

impl Blocking {
    /// Call from async code; use the result on a blocking thread.
    pub fn new(object: Arc<Object>) -> Blocking {
        Blocking {
            object,
            rt: Handle::current(),
        }
    }

    pub fn object(&self) -> &Object {
        &self.object
    }

    pub fn ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, ObjectsError> {
        self.rt.block_on(self.object.ranges(ranges))
    }

    /// A stream of each range, all requested side by side; each is read as it is pulled.
    pub fn streams(&self, ranges: &[Range<u64>]) -> Result<Vec<Chunks>, ObjectsError> {
        let opening = ranges.iter().map(|r| self.object.stream(Some(r.clone())));
        self.rt.block_on(futures::future::try_join_all(opening))
    }

    /// The next chunk of `stream`; `None` at its end.
    pub fn pull(&self, stream: &mut Chunks) -> Option<Result<Bytes, ObjectsError>> {
        self.rt.block_on(stream.next())
    }

    /// The whole object as a [`Read`], fetched as it is read.
    pub fn reader(&self) -> Result<StreamRead, ObjectsError> {
        let stream = self.rt.block_on(self.object.stream(None))?;
        Ok(StreamRead {
            stream,
            current: Bytes::new(),
            rt: self.rt.clone(),
        })
    }
}

/// A body (or a range of one) as it arrives.
pub type Chunks = BoxStream<'static, Result<Bytes, ObjectsError>>;

/// A streamed body as [`Read`]: one chunk held at a time.
pub struct StreamRead {
    stream: Chunks,
    current: Bytes,
    rt: Handle,
}

impl Read for StreamRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
