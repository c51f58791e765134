//! The replay buffer: the last `--replay-bytes` of output, cut on a
//! character boundary, sent first to a client that attaches.

use std::collections::VecDeque;

use bytes::Bytes;

/// The most recent output, at most `capacity` bytes, starting on a UTF-8
/// character boundary.
pub(super) struct Replay {
    pub(super) bytes: VecDeque<u8>,
    pub(super) capacity: usize,
}

impl Replay {
    pub(super) fn new(capacity: usize) -> Replay {
        Replay {
            bytes: VecDeque::new(),
            capacity,
        }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        let chunk = &chunk[chunk.len().saturating_sub(self.capacity)..];
        self.bytes.extend(chunk);
        let excess = self.bytes.len().saturating_sub(self.capacity);
        self.bytes.drain(..excess);
        while self.bytes.front().is_some_and(|b| b & 0xC0 == 0x80) {
            self.bytes.pop_front();
        }
    }

    pub(super) fn snapshot(&self) -> Option<Bytes> {
        if self.bytes.is_empty() {
            return None;
        }
        let (a, b) = self.bytes.as_slices();
        Some(Bytes::from([a, b].concat()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn replay_keeps_the_tail_on_a_character_boundary() {
        let mut replay = Replay::new(4);
        assert_eq!(replay.snapshot(), None);
        replay.push(b"abc");
        replay.push("dé€".as_bytes()); // é is 2 bytes, € is 3
                                       // The last 4 bytes start inside é: its tail byte is dropped.
        assert_eq!(replay.snapshot().unwrap(), "€".as_bytes());
        replay.push(b"0123456789");
        assert_eq!(replay.snapshot().unwrap(), &b"6789"[..]);
    }
}
