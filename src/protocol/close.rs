//! Websocket close codes (docs/API.md, "Close codes"): the number, what it
//! means to a client, and the reasons the server sends with it. Shared by the
//! server's sessions and every client; knows nothing of sockets.

/// A close code the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1000: the command exited.
    Exited,
    /// 1001: the server is shutting down.
    Shutdown,
    /// 1009: a message or frame over 1 MiB.
    TooBig,
    /// 1011: the terminal could not start, or its connection to Docker broke.
    Internal,
    /// 1013: observers only: too many, or fell behind; try again later.
    TryLater,
    /// 4001: taken over by a newer connection.
    TakenOver,
    /// 4002: idle timeout.
    Idle,
    /// 4003: the instance was cleaned or expired.
    Gone,
    /// 4004: observers only: the terminal is not running (nothing to watch).
    NotRunning,
}

impl Code {
    /// Every code, in the order of their numbers' kinds.
    pub const ALL: [Code; 9] = [
        Code::Exited,
        Code::Shutdown,
        Code::TooBig,
        Code::Internal,
        Code::TryLater,
        Code::TakenOver,
        Code::Idle,
        Code::Gone,
        Code::NotRunning,
    ];

    /// The number on the wire.
    pub const fn number(self) -> u16 {
        match self {
            Code::Exited => 1000,
            Code::Shutdown => 1001,
            Code::TooBig => 1009,
            Code::Internal => 1011,
            Code::TryLater => 1013,
            Code::TakenOver => 4001,
            Code::Idle => 4002,
            Code::Gone => 4003,
            Code::NotRunning => 4004,
        }
    }

    /// The number as text, e.g. for metric labels (`const`, so static label
    /// sets can be built from it).
    pub const fn label(self) -> &'static str {
        match self {
            Code::Exited => "1000",
            Code::Shutdown => "1001",
            Code::TooBig => "1009",
            Code::Internal => "1011",
            Code::TryLater => "1013",
            Code::TakenOver => "4001",
            Code::Idle => "4002",
            Code::Gone => "4003",
            Code::NotRunning => "4004",
        }
    }

    /// The code with this number, if it is one of ours.
    pub fn from_number(number: u16) -> Option<Code> {
        Code::ALL.into_iter().find(|code| code.number() == number)
    }

    /// What the close means, for a client to tell its user; `None` where a
    /// client has nothing better to say than the number.
    pub const fn meaning(self) -> Option<&'static str> {
        match self {
            Code::Exited => Some("the shell exited"),
            Code::Shutdown => Some("the server is shutting down"),
            Code::TakenOver => Some("taken over by a newer connection"),
            Code::Idle => Some("closed after being idle too long"),
            Code::Gone => Some("the instance was cleaned or expired"),
            Code::TooBig => Some("a message was too big"),
            Code::Internal | Code::TryLater | Code::NotRunning => None,
        }
    }
}

/// Why the server closes a websocket: a code and the words sent with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The command exited (1000).
    Exited,
    /// The server is shutting down (1001).
    Shutdown,
    /// A message or frame over 1 MiB (1009).
    TooBig,
    /// The terminal could not be started (1011).
    NotStarted,
    /// The terminal's connection to Docker broke (1011).
    DockerBroke,
    /// An observer fell behind the output (1013).
    Lagging,
    /// The terminal has all the observers it takes (1013).
    ObserversFull,
    /// A newer connection took over (4001).
    TakenOver,
    /// Idle timeout (4002).
    Idle,
    /// The instance was cleaned or expired (4003).
    Gone,
    /// Observers: the terminal is not running (4004).
    NotRunning,
}

impl Reason {
    /// The close code.
    pub const fn code(self) -> Code {
        match self {
            Reason::Exited => Code::Exited,
            Reason::Shutdown => Code::Shutdown,
            Reason::TooBig => Code::TooBig,
            Reason::NotStarted | Reason::DockerBroke => Code::Internal,
            Reason::Lagging | Reason::ObserversFull => Code::TryLater,
            Reason::TakenOver => Code::TakenOver,
            Reason::Idle => Code::Idle,
            Reason::Gone => Code::Gone,
            Reason::NotRunning => Code::NotRunning,
        }
    }

    /// The close frame's reason text (never holds spec data).
    pub const fn words(self) -> &'static str {
        match self {
            Reason::Exited => "the command exited",
            Reason::Shutdown => "the server is shutting down",
            Reason::TooBig => "frame over 1 MiB",
            Reason::NotStarted => "the terminal could not be started",
            Reason::DockerBroke => "the terminal's connection to Docker broke",
            Reason::Lagging => "fell behind the output; reconnect",
            Reason::ObserversFull => {
                "this terminal has all the observers it takes; try again later"
            }
            Reason::TakenOver => "taken over by a newer connection",
            Reason::Idle => "idle for too long",
            Reason::Gone => "the instance is gone; send the spec again",
            Reason::NotRunning => "not running",
        }
    }
}

/// What a client says about a close frame with `number` (or none).
pub fn describe(number: Option<u16>) -> String {
    match number.map(|n| (n, Code::from_number(n).and_then(Code::meaning))) {
        Some((_, Some(meaning))) => meaning.to_string(),
        Some((n, None)) => format!("closed by the server (code {n})"),
        None => "closed by the server".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_labels_agree() {
        let numbers: Vec<u16> = Code::ALL.iter().map(|c| c.number()).collect();
        assert_eq!(
            numbers,
            [1000, 1001, 1009, 1011, 1013, 4001, 4002, 4003, 4004]
        );
        for code in Code::ALL {
            assert_eq!(code.label(), code.number().to_string());
            assert_eq!(Code::from_number(code.number()), Some(code));
        }
        assert_eq!(Code::from_number(1005), None);
    }

    #[test]
    fn clients_describe_closes() {
        assert_eq!(describe(Some(1000)), "the shell exited");
        assert_eq!(describe(Some(4002)), "closed after being idle too long");
        assert_eq!(describe(Some(1011)), "closed by the server (code 1011)");
        assert_eq!(describe(Some(3000)), "closed by the server (code 3000)");
        assert_eq!(describe(None), "closed by the server");
    }

    #[test]
    fn reasons_fit_in_a_close_frame() {
        // A close frame's reason has at most 123 bytes.
        let all = [
            Reason::Exited,
            Reason::Shutdown,
            Reason::TooBig,
            Reason::NotStarted,
            Reason::DockerBroke,
            Reason::Lagging,
            Reason::ObserversFull,
            Reason::TakenOver,
            Reason::Idle,
            Reason::Gone,
            Reason::NotRunning,
        ];
        for reason in all {
            assert!(reason.words().len() <= 123, "{reason:?}");
        }
        assert_eq!(Reason::DockerBroke.code().number(), 1011);
        assert_eq!(Reason::ObserversFull.code().number(), 1013);
    }
}
