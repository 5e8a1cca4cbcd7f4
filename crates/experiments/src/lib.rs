//! crew's experiment statistics: what a bucket test's exposures and conversions say, variant by variant.
//!
//! A unit is a user exposed to one variant; a conversion is that user doing the tracked thing after their
//! exposure (a proportion metric: a user converts or not). Against the control each variant gets the relative
//! lift of its rate, `(rate_b − rate_a) / rate_a`, with its delta-method variance as GrowthBook's `gbstats`
//! computes it, and an interval:
//! - [`Method::Sequential`] (the default): the asymptotic confidence sequence of Waudby-Smith et al. (2023, eq. 9),
//!   valid however often it is looked at, with its always-valid p-value (eq. 155) — `gbstats`'
//!   `SequentialTwoSidedTTest`, tuning parameter 5,000;
//! - [`Method::Fixed`]: Welch's t interval and p-value for one look at a fixed horizon (`TwoSidedTTest`).
//!
//! [`srm`] is the sample-ratio-mismatch check: Pearson's chi-square of the users per variant against the
//! configured weights. **Invariant: does no IO**; times are arguments (milliseconds since the epoch).

mod stats;
mod tally;

pub use stats::{compare, rate_interval, srm, Comparison, Method, Srm, SRM_MIN_USERS, SRM_P};
pub use tally::{
    analyse, analyse_tallies, Analysis, Bucket, Options, Point, PointVariant, Unit, Variant, VariantResult,
};
