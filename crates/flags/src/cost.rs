//! A rule's worst case, estimated once when it is stored: rules whose estimate exceeds [`MAX_STEPS`] are refused
//! with the operator that makes them so costly named.
//!
//! The estimate walks the compiled rule once, carrying for every value an upper bound of its shape (how many
//! items, how large each). What multiplies work is iteration (`map`, `filter`, `reduce`, `all`, `none`, `some`
//! run their rule once per item) and what grows lists (`merge`, `cat`, a `reduce` whose accumulator feeds
//! itself): a `reduce` that doubles a list 14 times inside an `all` over the result is 2^14 × 2^14 steps, found
//! here rather than by the server stalling. The units are those of the evaluation budget (`logic`'s steps), so
//! a rule that passes here would run within the budget on a context whose lists have [`CONTEXT_ITEMS`] items.
//!
//! The context is the caller's: its real size is only known when evaluating, where the budget holds. The
//! estimate takes every value read from it as a list of [`CONTEXT_ITEMS`] items (each a list of as many), so
//! that a rule whose cost is a high power of the context's size (a `reduce` doubling per context item) is refused
//! too, while iterating over a context list, or over its items' lists, passes.

use crate::logic::{Expr, Op, MAX_ITEMS, MAX_STEPS};
use serde_json::Value;

/// How many items a list read from the context is taken to have, each as large as a list of as many: 20 keeps
/// every realistic rule (a group list, a beta list, an iteration over the user's roles and their permissions)
/// far below the bound, and refuses a cost that is a high power of the context's size, like a `reduce`
/// doubling its accumulator per item (2^20).
pub const CONTEXT_ITEMS: u64 = 20;

/// An upper bound of a value: a list of at most `len` items, each of at most `elem` values deep (a string is
/// counted as `len` pieces of 16 bytes, as the budget counts it). A scalar is `len: 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    len: u64,
    elem: u64,
}

impl Shape {
    const SCALAR: Shape = Shape { len: 0, elem: 0 };
    /// A value read from the caller's context: a list of lists, so that iterating over its items' items counts.
    const CONTEXT: Shape = Shape { len: CONTEXT_ITEMS, elem: CONTEXT_ITEMS };

    /// How many values copying or comparing it touches.
    fn size(self) -> u64 {
        1u64.saturating_add(self.len.saturating_mul(self.elem.max(1)))
    }

    fn join(self, o: Shape) -> Shape {
        Shape { len: self.len.max(o.len), elem: self.elem.max(o.elem) }
    }

    /// One of its items, as what an iteration's rule sees as its data.
    fn item(self) -> Shape {
        if self.elem <= 1 {
            Shape::SCALAR
        } else {
            Shape { len: self.elem - 1, elem: 1 }
        }
    }
}

/// What a `var` can read.
#[derive(Debug, Clone, Copy)]
enum Data {
    /// The caller's context.
    Context,
    /// An item of a list (the data of a `map`, `filter`, `all`, `none`, `some` rule).
    Item(Shape),
    /// A `reduce` rule's `{"current", "accumulator"}`.
    Reduce { acc: Shape, cur: Shape },
}

impl Data {
    fn whole(self) -> Shape {
        match self {
            Data::Context => Shape::CONTEXT,
            Data::Item(s) => s,
            Data::Reduce { acc, cur } => Shape { len: 2, elem: acc.size().max(cur.size()) },
        }
    }

    fn path(self, path: &str) -> Shape {
        if path.starts_with("$flagd.") {
            return Shape::SCALAR;
        }
        match self {
            Data::Reduce { acc, cur } if path.is_empty() => Data::Reduce { acc, cur }.whole(),
            Data::Reduce { acc, .. } if path == "accumulator" || path.starts_with("accumulator.") => acc,
            Data::Reduce { cur, .. } if path == "current" || path.starts_with("current.") => cur,
            Data::Reduce { .. } => Shape::SCALAR,
            other => other.whole(),
        }
    }
}

/// The estimate of one node: its steps (with its arguments') and its result's shape; `by` is the operator that
/// made the value, to name in a refusal.
#[derive(Debug, Clone, Copy)]
struct Est {
    steps: u64,
    shape: Shape,
    by: Option<&'static str>,
}

/// Estimates a compiled rule's worst case; `Err` names the operator whose cost passes [`MAX_STEPS`].
pub fn check(rule: &Expr) -> Result<u64, String> {
    estimate(rule, Data::Context).map(|e| e.steps)
}

fn over(steps: u64, op: Op, inner: Option<&'static str>, detail: String) -> Result<(), String> {
    if steps <= MAX_STEPS {
        return Ok(());
    }
    let who = match inner {
        Some(i) if i != op.name() => format!("`{i}` inside `{}`", op.name()),
        _ => format!("`{}`", op.name()),
    };
    Err(format!("{who} may take more than {MAX_STEPS} steps in one evaluation{detail}; simplify the rule"))
}

fn estimate(e: &Expr, data: Data) -> Result<Est, String> {
    match e {
        Expr::Lit(v) => {
            let shape = match v {
                Value::String(s) => Shape { len: s.len() as u64 >> 4, elem: 1 },
                _ => Shape::SCALAR,
            };
            Ok(Est { steps: shape.size(), shape, by: None })
        }
        Expr::Array(items) => {
            let mut steps = 1u64;
            let mut elem = 1u64;
            for i in items {
                let x = estimate(i, data)?;
                steps = steps.saturating_add(x.steps);
                elem = elem.max(x.shape.size());
            }
            if steps > MAX_STEPS {
                return Err(format!("a list of {} rules may take more than {MAX_STEPS} steps", items.len()));
            }
            Ok(Est { steps, shape: Shape { len: items.len() as u64, elem }, by: None })
        }
        Expr::Op(op, args) => op_estimate(*op, args, data),
    }
}

fn op_estimate(op: Op, args: &[Expr], data: Data) -> Result<Est, String> {
    let name = Some(op.name());
    // Iterations estimate their rule with the item as its data, once, and multiply.
    if matches!(op, Op::Map | Op::Filter | Op::All | Op::None | Op::Some | Op::Reduce) {
        return iteration(op, args, data);
    }
    let est: Vec<Est> = args.iter().map(|a| estimate(a, data)).collect::<Result<_, _>>()?;
    let mut steps = est.iter().fold(1u64, |s, x| s.saturating_add(x.steps));
    let joined = |xs: &mut dyn Iterator<Item = &Est>| xs.fold(Shape::SCALAR, |s, x| s.join(x.shape));
    let size = |i: usize| est.get(i).map_or(1, |x| x.shape.size());
    let shape = match op {
        Op::Var => {
            let found = match args.first() {
                None | Some(Expr::Lit(Value::Null)) => data.whole(),
                Some(Expr::Lit(Value::String(p))) => data.path(p),
                Some(Expr::Lit(Value::Number(_))) => data.whole(),
                Some(_) => data.whole(),
            };
            let s = match est.get(1) {
                Some(d) => found.join(d.shape),
                None => found,
            };
            // The value is copied out of the data.
            steps = steps.saturating_add(s.size());
            s
        }
        Op::If => joined(&mut est.iter().enumerate().filter(|(i, _)| i % 2 == 1 || *i + 1 == est.len()).map(|x| x.1)),
        Op::Eq | Op::Ne | Op::StrictEq | Op::StrictNe => {
            steps = steps.saturating_add(size(0).min(size(1)));
            Shape::SCALAR
        }
        Op::Or | Op::And | Op::Fractional => joined(&mut est.iter()),
        Op::Log => est.first().map_or(Shape::SCALAR, |x| x.shape),
        Op::Merge => {
            let mut len = 0u64;
            let mut elem = 1u64;
            for x in &est {
                len = len.saturating_add(x.shape.len.max(1));
                elem = elem.max(if x.shape.len > 0 { x.shape.elem } else { x.shape.size() });
            }
            steps = steps.saturating_add(len);
            // Beyond MAX_ITEMS the evaluation makes null instead: the list never gets longer.
            Shape { len: len.min(MAX_ITEMS as u64), elem }
        }
        Op::In => {
            steps = steps.saturating_add(size(1)).saturating_add(size(0));
            Shape::SCALAR
        }
        Op::Cat => {
            let total = est.iter().fold(0u64, |s, x| s.saturating_add(x.shape.size()));
            steps = steps.saturating_add(total);
            Shape { len: total.min(MAX_ITEMS as u64), elem: 1 }
        }
        Op::Substr => {
            steps = steps.saturating_add(size(0));
            Shape { len: size(0), elem: 1 }
        }
        Op::Missing => {
            let keys = est.iter().fold(0u64, |s, x| s.saturating_add(x.shape.size()));
            steps = steps.saturating_add(keys);
            Shape { len: keys, elem: 1 }
        }
        Op::MissingSome => {
            steps = steps.saturating_add(size(1));
            Shape { len: size(1), elem: 1 }
        }
        Op::Not | Op::NotNot | Op::Gt | Op::Ge | Op::Lt | Op::Le | Op::Max | Op::Min | Op::Add | Op::Sub => {
            Shape::SCALAR
        }
        Op::Mul | Op::Div | Op::Mod | Op::SemVer | Op::StartsWith | Op::EndsWith => Shape::SCALAR,
        Op::Map | Op::Filter | Op::All | Op::None | Op::Some | Op::Reduce => unreachable!("iterations above"),
    };
    let costliest = est.iter().max_by_key(|x| x.steps).and_then(|x| x.by);
    over(steps, op, costliest, String::new())?;
    // A value read by `var` was made by the data's owner, not by an operator worth naming.
    Ok(Est { steps, shape, by: if op == Op::Var { None } else { name } })
}

fn iteration(op: Op, args: &[Expr], data: Data) -> Result<Est, String> {
    let list = match args.first() {
        Some(a) => estimate(a, data)?,
        None => Est { steps: 0, shape: Shape::SCALAR, by: None },
    };
    let n = list.shape.len;
    // The list's own cost, and one step per item (the budget's charge for walking it).
    let mut steps = 1u64.saturating_add(list.steps).saturating_add(n);
    let Some(body) = args.get(1) else {
        return Ok(Est { steps, shape: Shape::SCALAR, by: Some(op.name()) });
    };
    // What to name when this is too costly: the operator that made a long list, else the rule run per item.
    let named = |body_by: Option<&'static str>| if n > 1 && list.by.is_some() { list.by } else { body_by };
    let detail = |n: u64| format!(" (`{}` runs its rule for each of up to {n} items)", op.name());
    if op != Op::Reduce {
        let b = estimate(body, Data::Item(list.shape.item()))?;
        steps = steps.saturating_add(n.saturating_mul(b.steps.saturating_add(1)));
        over(steps, op, named(b.by), detail(n))?;
        let shape = match op {
            Op::Map => Shape { len: n, elem: b.shape.size() },
            Op::Filter => list.shape,
            _ => Shape::SCALAR,
        };
        return Ok(Est { steps, shape, by: Some(op.name()) });
    }
    let init = match args.get(2) {
        Some(a) => estimate(a, data)?,
        None => Est { steps: 0, shape: Shape::SCALAR, by: None },
    };
    steps = steps.saturating_add(init.steps);
    // The accumulator's shape after each item, joined so that it only grows: it either settles (then every
    // further item costs what the last did) or grows until the bound is passed, which ends the loop.
    let mut acc = init.shape;
    let cur = list.shape.item();
    let mut i = 0u64;
    while i < n {
        let b = estimate(body, Data::Reduce { acc, cur })?;
        let each = b.steps.saturating_add(2);
        let next = acc.join(b.shape);
        if next == acc {
            steps = steps.saturating_add((n - i).saturating_mul(each));
            over(steps, op, named(b.by), detail(n))?;
            break;
        }
        steps = steps.saturating_add(each);
        over(steps, op, named(b.by), detail(n))?;
        acc = next;
        i += 1;
    }
    Ok(Est { steps, shape: acc, by: Some(op.name()) })
}
