//! [`AgentError`]: what can go wrong between ua and an agent.

/// Why the agent could not do what ua asked.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No agent connected in time (the container is not running, or its
    /// agent cannot reach the socket).
    #[error("the container's agent did not connect")]
    NotConnected,
    /// The connection ended before the answer came.
    #[error("the agent's connection ended")]
    Gone,
    /// The agent answered with an error.
    #[error("the agent refused: {1}")]
    Refused(ua_agent::proto::ErrorCode, String),
    /// The agent answered with something that is not the reply asked for.
    #[error("the agent answered out of protocol")]
    Protocol,
    /// The socket directory or its listener.
    #[error("agent socket: {0}")]
    Io(#[from] std::io::Error),
}
