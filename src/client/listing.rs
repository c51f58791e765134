//! `ua list` with what each instance uses, filtered and sorted, and the
//! table that `ua top` redraws. Filters and sort run here, on the answer
//! of the admin socket's `list` (docs/API.md, "Admin socket").

use std::cmp::Reverse;
use std::fmt::Write as _;

use crate::client::admin::{ask, time, Target};
use crate::protocol::admin::{Request, Summary};
use crate::support::stdout::print;

/// Which instances a listing shows.
#[derive(clap::Args, Debug, Clone)]
pub struct Filter {
    /// Only this assignment's instances (`cs101.tar` or `cs101/tar`).
    #[arg(long)]
    pub assignment: Option<String>,
    /// Only running (a terminal, or its grace) or only stopped instances.
    #[arg(long, value_enum)]
    pub state: Option<State>,
}

/// An instance's state, as `--state` names it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A terminal runs (attached, or in its grace).
    Running,
    /// No terminal runs.
    Stopped,
}

/// What a listing is sorted by: the largest use, the longest idle, the
/// latest use, the soonest expiry first; names in order; unknown last.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Memory in use.
    Memory,
    /// Recent CPU.
    Cpu,
    /// The writable layer's size.
    Disk,
    /// Processes.
    Pids,
    /// Time since the last keystroke.
    Idle,
    /// Attached first, then in grace, then none.
    Terminal,
    /// Running first.
    State,
    /// Most recently used first (the default of `ua list`).
    LastUsed,
    /// Soonest to expire first.
    Expires,
    /// By handle.
    Handle,
    /// By assignment.
    Assignment,
    /// By spec ID.
    SpecId,
}

/// `ua list`'s options.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Where the server is.
    #[command(flatten)]
    pub target: Target,
    /// Print JSON: the listed instances, as the admin socket gives them.
    #[arg(long)]
    pub json: bool,
    /// Which instances are shown.
    #[command(flatten)]
    pub filter: Filter,
    /// Sort by this (default: most recently used first).
    #[arg(long, value_enum)]
    pub sort: Option<SortKey>,
}

impl Filter {
    /// Whether `instance` is shown.
    pub fn matches(&self, instance: &Summary) -> bool {
        let dotted = |name: &str| name.replace('/', ".");
        let of_assignment = self
            .assignment
            .as_ref()
            .is_none_or(|a| dotted(a) == dotted(&instance.assignment));
        let in_state = self
            .state
            .is_none_or(|state| (instance.state == "running") == (state == State::Running));
        of_assignment && in_state
    }
}

/// The server's instances with their usage, filtered and sorted.
pub fn fetch(
    target: &Target,
    filter: &Filter,
    sort: Option<SortKey>,
) -> anyhow::Result<Vec<Summary>> {
    let answer = ask(&target.state_dir, &Request::List { usage: true })?;
    let instances: Vec<Summary> = serde_json::from_value(answer["instances"].clone())?;
    let mut shown: Vec<Summary> = instances
        .into_iter()
        .filter(|i| filter.matches(i))
        .collect();
    if let Some(key) = sort {
        sort_by(&mut shown, key);
    }
    Ok(shown)
}

/// `ua list`: the instances by handle, with what each uses.
pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let shown = fetch(&args.target, &args.filter, args.sort)?;
    if args.json {
        print(&format!("{:#}\n", serde_json::to_value(&shown)?))?;
    } else {
        print(&table(&shown))?;
    }
    Ok(())
}

/// Largest first, unknown last.
fn most_first(value: Option<u64>) -> (bool, Reverse<u64>) {
    (value.is_none(), Reverse(value.unwrap_or(0)))
}

/// Sorts stably by `key`.
pub fn sort_by(list: &mut [Summary], key: SortKey) {
    match key {
        SortKey::Memory => list.sort_by_key(|s| most_first(s.usage.memory_bytes)),
        // Tenths of a percent: the figures are rounded so.
        SortKey::Cpu => {
            list.sort_by_key(|s| most_first(s.usage.cpu_percent.map(|p| (p * 10.0).round() as u64)))
        }
        SortKey::Disk => list.sort_by_key(|s| most_first(s.usage.disk_bytes)),
        SortKey::Pids => list.sort_by_key(|s| most_first(s.usage.pids)),
        SortKey::Idle => list.sort_by_key(|s| most_first(s.usage.idle_seconds)),
        SortKey::Terminal => list.sort_by_key(|s| match s.usage.terminal.as_deref() {
            Some("attached") => 0,
            Some(_) => 1,
            None => 2,
        }),
        SortKey::State => list.sort_by_key(|s| s.state != "running"),
        SortKey::LastUsed => list.sort_by_key(|s| Reverse(s.last_used)),
        SortKey::Expires => list.sort_by_key(|s| (s.expires.is_none(), s.expires)),
        SortKey::Handle => list.sort_by(|a, b| a.handle.cmp(&b.handle)),
        SortKey::Assignment => list.sort_by(|a, b| a.assignment.cmp(&b.assignment)),
        SortKey::SpecId => list.sort_by(|a, b| a.spec_id.cmp(&b.spec_id)),
    }
}

/// Bytes in binary units: `512B`, `4.0K`, `98.1M`, `1.5G`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// Seconds as the largest whole unit: `45s`, `12m`, `3h`, `2d`.
pub fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The usage columns of one instance, `-` where unknown.
fn usage_cells(i: &Summary) -> [String; 6] {
    let u = &i.usage;
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let memory = u.memory_bytes.map(|m| match u.memory_limit_bytes {
        Some(limit) => format!("{}/{}", bytes(m), bytes(limit)),
        None => bytes(m),
    });
    [
        or_dash(u.terminal.clone()),
        or_dash(u.idle_seconds.map(duration)),
        or_dash(memory),
        or_dash(u.cpu_percent.map(|p| format!("{p:.1}%"))),
        or_dash(u.disk_bytes.map(bytes)),
        or_dash(u.pids.map(|p| p.to_string())),
    ]
}

/// A header, then one line per instance.
pub fn table(instances: &[Summary]) -> String {
    let mut out = format!(
        "{:<8}  {:<7}  {:<8}  {:<5}  {:<15}  {:>6}  {:>7}  {:>5}  {:<20}  {:<20}  {:<24}  SPEC ID\n",
        "HANDLE", "STATE", "TERMINAL", "IDLE", "MEMORY", "CPU", "DISK", "PIDS", "LAST USED", "EXPIRES", "ASSIGNMENT"
    );
    for i in instances {
        let [terminal, idle, memory, cpu, disk, pids] = usage_cells(i);
        writeln!(
            out,
            "{:<8}  {:<7}  {terminal:<8}  {idle:<5}  {memory:<15}  {cpu:>6}  {disk:>7}  {pids:>5}  {:<20}  {:<20}  {:<24}  {}",
            i.handle,
            i.state,
            time(i.last_used),
            i.expires.map_or_else(|| "-".to_string(), time),
            i.assignment,
            i.spec_id
        )
        .ok();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::admin::Usage;

    fn summary(handle: &str, state: &str, usage: Usage) -> Summary {
        Summary {
            handle: handle.into(),
            spec_id: format!("spec-{handle}"),
            assignment: "cs101/tar".into(),
            state: state.into(),
            last_used: 0,
            expires: None,
            usage,
        }
    }

    #[test]
    fn the_largest_comes_first_and_the_unknown_last() {
        let mut list = vec![
            summary("a", "stopped", Usage::default()),
            summary(
                "b",
                "running",
                Usage {
                    memory_bytes: Some(10),
                    pids: Some(90),
                    ..Usage::default()
                },
            ),
            summary(
                "c",
                "running",
                Usage {
                    memory_bytes: Some(300),
                    pids: Some(2),
                    ..Usage::default()
                },
            ),
        ];
        sort_by(&mut list, SortKey::Memory);
        let order: Vec<&str> = list.iter().map(|s| s.handle.as_str()).collect();
        assert_eq!(order, ["c", "b", "a"]);
        sort_by(&mut list, SortKey::Pids);
        assert_eq!(list[0].handle, "b");
        sort_by(&mut list, SortKey::Handle);
        assert_eq!(list[0].handle, "a");
    }

    #[test]
    fn filters_take_either_spelling_of_the_assignment_and_a_state() {
        let running = summary("a", "running", Usage::default());
        let filter = |assignment: Option<&str>, state| Filter {
            assignment: assignment.map(str::to_string),
            state,
        };
        assert!(filter(Some("cs101.tar"), Some(State::Running)).matches(&running));
        assert!(filter(Some("cs101/tar"), None).matches(&running));
        assert!(!filter(Some("cs101.git"), None).matches(&running));
        assert!(!filter(None, Some(State::Stopped)).matches(&running));
    }

    #[test]
    fn sizes_and_durations_read_short() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(100 * 1024 * 1024 + 1), "100.0M");
        assert_eq!(bytes(3 << 29), "1.5G");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(7300), "2h");
    }
}
