//! crew's on-call core, with no IO: schedules of layered rotations on a zone's wall clock with restrictions,
//! overrides and gaps (`schedule`), escalation policies and their timing as a state machine (`escalation`), and
//! the final schedule as an iCalendar feed (`ical`), and working hours with when an unannounced drill is due (`hours`). Time is always an argument: the server owns the clock, the
//! store and the notifications.

pub mod escalation;
pub mod hours;
pub mod ical;
pub mod schedule;

pub use escalation::{Escalation, Fired, Policy, Step, Target};
pub use schedule::{
    check_override, final_schedule, gaps, local_to_utc, next_change, on_call_at, overlapping, parse_span, parse_zone,
    Layer, Override, Restriction, Rotation, Schedule, Segment, Source, REACH_DAYS,
};
