//! The command line: every command, flag and its help. Each flag also reads a `CREW_*` variable.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "crew",
    version,
    about = "Ship trunk ten times a day without breaking the site.",
    long_about = "crew builds and deploys trunk in one step and keeps the deploy log, serves feature flags, \
                  collects metrics with deploys drawn on every graph, sits in chat, keeps machines in their roles, \
                  and records every change as an event on one timeline.\n\n\
                  `crew serve` runs the server; every other command is a client of a running server \
                  (--server, a token from CREW_TOKEN or <data-dir>/admin.token).\n\n\
                  Exit codes: 0 ok, 1 the operation failed, 2 bad usage or bad input, 3 refused (auth, lock held).",
    after_help = "New here? Run `crew demo`."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The crew server to talk to.
    #[arg(long, global = true, env = "CREW_SERVER", default_value = "http://127.0.0.1:7070", value_name = "URL")]
    pub server: String,
    /// crew's data folder: the server keeps its database and admin.token here; the CLI reads the token from it
    /// when CREW_TOKEN is not set. [default: ./.crew]
    #[arg(long, global = true, env = "CREW_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print JSON instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: HTTP API, web UI, live stream, and (as they land) StatsD, the robot and schedulers.
    Serve(ServeArgs),
    /// Try crew: a server on a fresh temporary data folder with some events, and what to try next.
    Demo(DemoArgs),
    /// Show the timeline, oldest of the newest N first; --follow keeps printing new events as they happen.
    Events(EventsArgs),
    /// Show the server's version, store, uptime and counts, and per environment the live release and lock.
    Status,
    /// The chat robot: `crew chat status` shows its IRC connection, rooms and recent lines.
    Chat {
        #[command(subcommand)]
        action: ChatAction,
    },
    /// Build trunk's head (or --rev, a commit on trunk) once and ship it to every host of an environment.
    Deploy {
        /// The environment, as named in crew.toml's [environments.*].
        environment: String,
        /// A commit on trunk to deploy instead of its head.
        #[arg(long, value_name = "REV")]
        rev: Option<String>,
        /// Why: shown in the deploy log and on the timeline.
        #[arg(short = 'm', long = "message", value_name = "MSG", default_value = "")]
        message: String,
    },
    /// A bucket test's results: per variant its users, conversions and rate, the lift against the control with
    /// its interval (sequential: safe to look at any time) and p-value, the sample-ratio check, the winner.
    Experiment {
        /// The split flag.
        key: String,
        /// The tracking event counted as a conversion (the flag's own key by default).
        #[arg(long, value_name = "NAME")]
        metric: Option<String>,
        /// `sequential` (the default) or `fixed` (Welch, for one look at a fixed horizon).
        #[arg(long, value_name = "METHOD")]
        method: Option<String>,
        /// Every phase, not only the current one.
        #[arg(long)]
        all: bool,
    },
    /// Decide a deploy the judge holds (a marginal or failing canary with on_fail = page or pause): go on, or
    /// switch back.
    Decide {
        /// The deploy's number.
        deploy: String,
        /// `proceed` (switch the rest) or `switch-back`.
        decision: String,
        /// Why, for the timeline.
        #[arg(short = 'm', long = "message", value_name = "MSG", default_value = "")]
        message: String,
    },
    /// Switch an environment back to the previous release still on its hosts (or --to a deploy). No build.
    Rollback {
        environment: String,
        /// The deploy (its number) whose release to go back to.
        #[arg(long, value_name = "DEPLOY")]
        to: Option<String>,
    },
    /// Lock an environment: deploys by anyone else are refused until you unlock it.
    Lock {
        environment: String,
        /// Why it is locked, so others know when to ask.
        #[arg(short = 'm', long = "message", value_name = "REASON", required = true)]
        reason: String,
    },
    /// Release your lock on an environment (admins may release anyone's).
    Unlock { environment: String },
    /// The deploy log, newest first: who deployed what, when.
    Log {
        /// Only this environment.
        environment: Option<String>,
        #[arg(short = 'n', long = "limit", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// The commits on trunk not yet live on an environment.
    Pending { environment: String },
    /// A series as a sparkline in the terminal, with the deploys and flag changes in range marked under it.
    Graph {
        /// The series name (`www.requests`); every label set of it is drawn.
        name: String,
        /// How far back: `15m`, `6h`, `7d`.
        #[arg(long, default_value = "6h")]
        since: String,
        /// The figure: count, rate, sum, mean, min, max, p50, p90, p99, value, distinct (default by kind).
        #[arg(long)]
        stat: Option<String>,
        /// Only series with these labels: `env=prod,route=/`.
        #[arg(long)]
        labels: Option<String>,
    },
    /// Machines kept in their roles: `crew infra plan TARGET` shows what would change (diffs, nothing touched),
    /// `crew infra apply TARGET` converges; TARGET is a host, a role or `all` from crew.toml's [[hosts]].
    Infra {
        #[command(subcommand)]
        action: InfraAction,
    },
    /// List the feature flags and what each does, in words; or apply / export a flagd file kept in the repo.
    Flags {
        #[command(subcommand)]
        action: Option<FlagsAction>,
    },
    /// Show a flag, or change it in Flickr's words:
    ///   crew flag KEY                          show: state, rules in words, who changed it last
    ///   crew flag KEY on | off                 a contingency switch (off: every application's code default wins)
    ///   crew flag KEY rollout N                N% of users, sticky by targeting key
    ///   crew flag KEY beta --users a,b --groups staff    a private beta
    ///   crew flag KEY dark N                   a dark launch: N% get variant `dark`; beta users keep `on`
    ///   crew flag KEY split control=50,new=50  a bucket test
    ///   crew flag KEY plan [--file plan.toml]  show or set its launch plan (owner, risks, contingency, runbook, [[watch]])
    ///   crew flag KEY ramp 1,5,25,50,100 --every 10m -r WHY   ramp it, each step judged against the control
    ///   crew flag KEY ramp [cancel -r WHY]     show its ramp, or cancel it (the flag stays where it is)
    ///   crew flag eval KEY --user U [--attr k=v]         evaluate as a user would be
    #[command(verbatim_doc_comment)]
    Flag(FlagArgs),
    /// Create, list and revoke tokens (admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Who is on call now and next (every schedule, or one); `override` and `take` change who is.
    Oncall(OncallArgs),
    /// An incident's blameless postmortem: print it (Markdown), replace it from a file, move it to review or
    /// publish it.
    Postmortem {
        id: String,
        /// Replace the Markdown with this file's.
        #[arg(long, value_name = "FILE")]
        file: Option<std::path::PathBuf>,
        /// draft, in_review or published.
        #[arg(long)]
        state: Option<String>,
    },
    /// Fire drills from the repository's drills/*.toml: `crew drill list`, `crew drill run NAME`.
    Drill {
        #[command(subcommand)]
        action: DrillAction,
    },
    /// Incidents: list, show, ack, resolve, note, open.
    Incident {
        #[command(subcommand)]
        action: IncidentAction,
    },
    /// Judge a canary against a baseline by hand, here (no server): two files of numbers, one a line (blank
    /// lines and `#` comments ignored). Prints Mann-Whitney U, its p-value, the Hodges-Lehmann shift canary −
    /// baseline with its 98% interval, the classification and the verdict, as a deploy's judge would.
    Judge(JudgeArgs),
}

#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// The baseline's numbers, one a line.
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// The canary's numbers, one a line.
    #[arg(long, value_name = "FILE")]
    pub canary: PathBuf,
    /// The bad direction: increase (latency, errors), decrease (throughput), or either.
    #[arg(long, default_value = "either", value_parser = ["increase", "decrease", "either"])]
    pub direction: String,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OncallArgs {
    #[command(subcommand)]
    pub action: Option<OncallAction>,
    /// Only this schedule.
    pub schedule: Option<String>,
    /// At this time instead of now (RFC 3339, Unix seconds, `-2h`, `+8h`).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OncallAction {
    /// Put someone on call for a schedule from --from until --until (times as RFC 3339, `+2h`, ...).
    Override {
        schedule: String,
        #[arg(long)]
        user: String,
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        #[arg(long, value_name = "TIME")]
        until: String,
    },
    /// Take the shift yourself, from now until --until.
    Take {
        schedule: String,
        #[arg(long, value_name = "TIME")]
        until: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DrillAction {
    /// The drills and their runs (time to acknowledge, whether the hypothesis held).
    List,
    /// Run a drill; refused while an incident is open or a deploy runs. Waits for the end and prints the journal.
    Run { name: String },
}

#[derive(Debug, Subcommand)]
pub enum IncidentAction {
    /// Incidents, open first.
    List {
        /// Only open ones.
        #[arg(long)]
        open: bool,
    },
    /// One incident with its timeline.
    Show { id: String },
    /// Acknowledge: you are on it, nobody else is paged.
    Ack { id: String },
    /// Resolve, with what fixed it.
    Resolve {
        id: String,
        #[arg(short = 'm', long = "message", value_name = "NOTE")]
        note: Option<String>,
    },
    /// Add a note to an incident's timeline.
    Note { id: String, text: String },
    /// Undo a change listed before the incident (`crew incident show` lists each with its event id).
    Undo { id: String, event: String },
    /// Open an incident by hand; with --escalation it pages.
    Open {
        summary: String,
        #[arg(long)]
        escalation: Option<String>,
        /// page (default) or ticket.
        #[arg(long, default_value = "page")]
        severity: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file; an explicitly named file must exist. [default: ./crew.toml if present]
    #[arg(long, env = "CREW_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address for the HTTP API and web UI; port 0 picks a free port. [default: 127.0.0.1:7070]
    #[arg(long, env = "CREW_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address for StatsD over UDP and TCP, or `off`. [default: 127.0.0.1:8125]
    #[arg(long, env = "CREW_STATSD", value_name = "ADDR|off")]
    pub statsd: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB. [default: sqlite://<data-dir>/crew.db]
    #[arg(long, env = "CREW_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// Log format.
    #[arg(long, env = "CREW_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address for the demo server; if 127.0.0.1:7070 is taken, a free port is used.
    #[arg(long, env = "CREW_LISTEN", default_value = "127.0.0.1:7070", value_name = "ADDR")]
    pub listen: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this kind, or kinds under a dotted prefix (`deploy` matches `deploy.started`).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only events about this subject (`www/production`, `flag:video`).
    #[arg(long, value_name = "SUBJECT")]
    pub subject: Option<String>,
    /// Only events by this person or robot.
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
    /// Words that must all appear in the summary or subject (any case; words match from their start).
    #[arg(long, short = 's', value_name = "WORDS")]
    pub search: Option<String>,
    /// Only events since then: a span back from now (90s, 15m, 1h, 7d) or a time (RFC 3339).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only events before then (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// How many of the newest events to show (1 to 1000).
    #[arg(short = 'n', long = "limit", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Keep running and print new events as they happen.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a person or an application; prints the secret once.
    Create {
        /// Who the token names: their name becomes the actor of what they do (e.g. alice, ci, www-app).
        name: String,
        /// viewer reads everything; member deploys, flips flags, records events; admin manages tokens;
        /// evaluate is for applications (flag evaluation only).
        #[arg(long, value_parser = ["viewer", "member", "admin", "evaluate"])]
        role: String,
    },
    /// List tokens (names and roles; secrets are never shown again).
    List,
    /// Revoke a token: it stops working at once, and its web sessions end.
    Revoke { name: String },
}

#[derive(Debug, Args)]
pub struct FlagArgs {
    /// The flag's key, or `eval` followed by a key.
    pub key: String,
    /// on | off | rollout N | beta | dark N | split SPEC | plan | ramp STEPS | ramp cancel (nothing: show the
    /// flag). After `eval`: the key.
    pub action: Vec<String>,
    /// plan: the plan file (TOML) to set.
    #[arg(long, value_name = "FILE", env = "CREW_PLAN_FILE")]
    pub file: Option<PathBuf>,
    /// ramp: the time between steps (`10m`); each step is judged after it.
    #[arg(long, value_name = "DURATION", env = "CREW_RAMP_EVERY")]
    pub every: Option<String>,
    /// Why: every change needs one (asked for when missing and a terminal is there).
    #[arg(long, short = 'r', value_name = "WHY")]
    pub reason: Option<String>,
    /// beta: these users' targeting keys (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "KEYS")]
    pub users: Vec<String>,
    /// beta: members of these groups (the `groups` attribute; comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "GROUPS")]
    pub groups: Vec<String>,
    /// eval: the user's targeting key.
    #[arg(long, value_name = "KEY")]
    pub user: Option<String>,
    /// eval: a context attribute (repeatable); numbers and true/false are typed.
    #[arg(long = "attr", value_name = "K=V")]
    pub attrs: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum InfraAction {
    /// What would change on each host, with unified diffs; changes nothing.
    Plan(InfraArgs),
    /// Converge each host; a second apply changes nothing.
    Apply(InfraArgs),
    /// A plan that records `infra.drift` on the timeline for each host whose live state departs from its roles.
    Check(InfraArgs),
    /// The engine itself, as `crew infra apply` runs it on a host over SSH: resources (JSON) on stdin, the
    /// report (JSON) on stdout.
    #[command(hide = true)]
    Engine {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Debug, Args)]
pub struct InfraArgs {
    /// A host name, a role name, or `all`.
    pub target: String,
    /// The crew.toml with [[hosts]] (roles are read from roles/ beside it).
    #[arg(long, env = "CREW_CONFIG", default_value = "crew.toml", value_name = "PATH")]
    pub config: PathBuf,
    /// Run on this machine whatever the hosts' addresses say.
    #[arg(long)]
    pub local: bool,
    /// Apply under this root prefix instead of each host's `root`.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// How many hosts at a time.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub forks: u16,
    /// Record nothing on the timeline (the server's drift schedule records what it finds itself).
    #[arg(long, hide = true)]
    pub no_record: bool,
    /// Print nothing but errors (the exit code and the timeline say how it went).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum ChatAction {
    /// Connection state (server, nick, channels, reconnects, SASL, backlog) and the last lines said.
    Status,
    /// Let a chat identity speak as a crew user (admin): `crew chat link alice --irc 'alice!*@*.example.com'`
    /// or `--irc account:alice` for a services account. Never a bare nick.
    Link {
        /// The crew user (a token's name); its role applies to what the identity runs.
        user: String,
        /// A hostmask pattern (nick!user@host with * and ?) or account:NAME.
        #[arg(long, value_name = "PATTERN")]
        irc: String,
    },
    /// Remove a link made with `crew chat link` (admin).
    Unlink {
        #[arg(long, value_name = "PATTERN")]
        irc: String,
    },
    /// The chat identities and the crew users they speak as (crew.toml's and linked ones).
    Links,
}

#[derive(Debug, Subcommand)]
pub enum FlagsAction {
    /// Make the server's flags match a flagd file: shows the diff; --yes applies it (flags not in the file are
    /// removed). `$evaluators` are written into the rules that use them.
    Apply {
        file: PathBuf,
        /// Apply, not only show the diff.
        #[arg(long)]
        yes: bool,
        /// Why: recorded with every change.
        #[arg(long, short = 'r', value_name = "WHY")]
        reason: Option<String>,
    },
    /// Print every flag as one flagd file (to keep in the repository).
    Export,
}
