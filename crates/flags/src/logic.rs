//! JsonLogic, compiled once when a flag is stored: each rule becomes a tree of [`Expr`] with its operator
//! resolved, so an evaluation walks the tree without looking at JSON keys. flagd's operators are built in:
//! `fractional`, `sem_ver`, `starts_with`, `ends_with`.

use crate::murmur3::murmur3_32;
use crate::semver;
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::cell::Cell;

/// The most items a `merge` (or bytes / 16 a `cat`) may produce in one evaluation: beyond, the result is null.
pub(crate) const MAX_ITEMS: usize = 100_000;

/// The most steps one evaluation of a rule may take: past it the evaluation stops and the flag answers an
/// error (GENERAL), so no rule, however its context is made, holds a thread for long. A step is an operator
/// evaluated, an item of a list walked, a value copied or compared, 16 bytes of a string read. A realistic rule
/// takes tens of steps (every flagd-testbed rule is estimated at under 1,300); a 10,000-name beta list about
/// 10,000; a single pass over the largest context the server accepts (1 MiB, about 500,000 values) still fits.
/// Spending the whole budget takes 10 to 30 ms on one core (measured on a shared 2-core machine). The same
/// figure bounds the worst-case estimate made when a rule is stored (`cost::check`).
pub const MAX_STEPS: u64 = 1_000_000;

/// The most nodes a compiled rule may have once its `$ref`s are expanded.
const MAX_NODES: usize = 20_000;

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Array(Vec<Expr>),
    Op(Op, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Var,
    Missing,
    MissingSome,
    If,
    Eq,
    StrictEq,
    Ne,
    StrictNe,
    Not,
    NotNot,
    Or,
    And,
    Gt,
    Ge,
    Lt,
    Le,
    Max,
    Min,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Map,
    Filter,
    Reduce,
    All,
    None,
    Some,
    Merge,
    In,
    Cat,
    Substr,
    Log,
    Fractional,
    SemVer,
    StartsWith,
    EndsWith,
}

impl Op {
    /// The operator as written in a rule (the first spelling when it has two).
    pub fn name(self) -> &'static str {
        match self {
            Op::Var => "var",
            Op::Missing => "missing",
            Op::MissingSome => "missing_some",
            Op::If => "if",
            Op::Eq => "==",
            Op::StrictEq => "===",
            Op::Ne => "!=",
            Op::StrictNe => "!==",
            Op::Not => "!",
            Op::NotNot => "!!",
            Op::Or => "or",
            Op::And => "and",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Max => "max",
            Op::Min => "min",
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Mod => "%",
            Op::Map => "map",
            Op::Filter => "filter",
            Op::Reduce => "reduce",
            Op::All => "all",
            Op::None => "none",
            Op::Some => "some",
            Op::Merge => "merge",
            Op::In => "in",
            Op::Cat => "cat",
            Op::Substr => "substr",
            Op::Log => "log",
            Op::Fractional => "fractional",
            Op::SemVer => "sem_ver",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
        }
    }
}

fn op(name: &str) -> Option<Op> {
    Some(match name {
        "var" => Op::Var,
        "missing" => Op::Missing,
        "missing_some" => Op::MissingSome,
        "if" | "?:" => Op::If,
        "==" => Op::Eq,
        "===" => Op::StrictEq,
        "!=" => Op::Ne,
        "!==" => Op::StrictNe,
        "!" => Op::Not,
        "!!" => Op::NotNot,
        "or" => Op::Or,
        "and" => Op::And,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "<" => Op::Lt,
        "<=" => Op::Le,
        "max" => Op::Max,
        "min" => Op::Min,
        "+" => Op::Add,
        "-" => Op::Sub,
        "*" => Op::Mul,
        "/" => Op::Div,
        "%" => Op::Mod,
        "map" => Op::Map,
        "filter" => Op::Filter,
        "reduce" => Op::Reduce,
        "all" => Op::All,
        "none" => Op::None,
        "some" => Op::Some,
        "merge" => Op::Merge,
        "in" => Op::In,
        "cat" => Op::Cat,
        "substr" => Op::Substr,
        "log" => Op::Log,
        "fractional" => Op::Fractional,
        "sem_ver" => Op::SemVer,
        "starts_with" => Op::StartsWith,
        "ends_with" => Op::EndsWith,
        _ => return None,
    })
}

/// Compiles a rule; `evaluators` are the shared rules `{"$ref": "name"}` points at. `strict` (for a definition
/// being stored) also refuses what flagd cannot evaluate either, like a weight that is not a whole number.
pub fn compile(v: &Value, evaluators: &Map<String, Value>, strict: bool) -> Result<Expr, String> {
    let mut budget = MAX_NODES;
    compile_depth(v, evaluators, 0, strict, &mut budget)
}

fn compile_depth(
    v: &Value,
    evaluators: &Map<String, Value>,
    depth: usize,
    strict: bool,
    budget: &mut usize,
) -> Result<Expr, String> {
    if depth > 64 {
        return Err("rule nested more than 64 deep (or a $ref cycle)".into());
    }
    // Counted as it is built: `$ref`s that each use the next twice would otherwise grow exponentially.
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| format!("rule has more than {MAX_NODES} parts once its $refs are expanded"))?;
    match v {
        Value::Array(items) => Ok(Expr::Array(
            items.iter().map(|i| compile_depth(i, evaluators, depth + 1, strict, budget)).collect::<Result<_, _>>()?,
        )),
        Value::Object(m) if m.len() == 1 => {
            let (name, args) = m.iter().next().expect("one entry");
            if name == "$ref" {
                let target = args.as_str().ok_or("$ref takes the name of an evaluator")?;
                let rule = evaluators.get(target).ok_or_else(|| format!("$ref to unknown evaluator `{target}`"))?;
                return compile_depth(rule, evaluators, depth + 1, strict, budget);
            }
            let op = op(name).ok_or_else(|| format!("unknown operator `{name}`"))?;
            let args: Vec<Expr> = match args {
                Value::Array(a) => a
                    .iter()
                    .map(|i| compile_depth(i, evaluators, depth + 1, strict, budget))
                    .collect::<Result<_, _>>()?,
                other => vec![compile_depth(other, evaluators, depth + 1, strict, budget)?],
            };
            if op == Op::Fractional && strict {
                check_weights(&args)?;
            }
            Ok(Expr::Op(op, args))
        }
        Value::Object(m) if m.is_empty() => Ok(Expr::Lit(v.clone())),
        Value::Object(_) => Err("a rule object must have exactly one operator".into()),
        other => Ok(Expr::Lit(other.clone())),
    }
}

/// Literal weights of `fractional` buckets must be whole numbers. A negative one counts as zero, as flagd
/// counts it, so a file flagd takes is taken here too (rules as weights are checked when they run).
fn check_weights(args: &[Expr]) -> Result<(), String> {
    for (i, b) in args.iter().enumerate() {
        if let Expr::Array(parts) = b {
            if let Some(Expr::Lit(Value::Number(w))) = parts.get(1) {
                if w.as_i64().is_none_or(|w| w > i32::MAX as i64) {
                    return Err(format!("fractional bucket {i}: weight {w} is not a whole number"));
                }
            }
        }
    }
    Ok(())
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Null => Some(0.0),
        _ => None,
    }
}

fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// JavaScript's `==`, as JsonLogic uses it.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => a == b,
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => num(a)?.partial_cmp(&num(b)?),
    }
}

/// Whether two strings are equal, decided in place for short ones (a context's keys, a variant's name): a few
/// word compares instead of a call to `memcmp`, which is most of the cost of comparing a 12-byte key.
#[inline]
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// Looks up a dotted path (`user.name`, `items.0`) in the data.
fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(data);
    }
    // The common path is one key (`targetingKey`, `email`): looked up without splitting.
    if !path.as_bytes().contains(&b'.') {
        return match data {
            Value::Object(m) if m.len() <= 8 => m.iter().find(|(k, _)| same(k, path)).map(|(_, v)| v),
            Value::Object(m) => m.get(path),
            Value::Array(a) => a.get(path.parse::<usize>().ok()?),
            _ => None,
        };
    }
    let mut cur = data;
    for part in path.split('.') {
        cur = match cur {
            // A context has a handful of keys: comparing them in order beats hashing the name.
            Value::Object(m) if m.len() <= 8 => m.iter().find(|(k, _)| same(k, part))?.1,
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// What an evaluation needs besides the data: the flag's key (for `fractional` and `$flagd.flagKey`) and the
/// time (`$flagd.timestamp`). These are looked up here rather than copied into the context, so an evaluation
/// never copies the caller's context. It also carries the evaluation's budget of steps ([`MAX_STEPS`]).
pub struct Scope<'a> {
    pub flag_key: &'a str,
    pub timestamp: i64,
    /// Steps left; below zero once a charge did not fit, and it only goes down, so that is sticky: every
    /// operator then answers null at once and every loop stops, so the evaluation unwinds in a few steps; the
    /// caller reads [`Scope::exceeded`] and discards the result. (A sticky count rather than a `Result` through
    /// every operator keeps the common paths as they were, plus one subtraction per node.)
    left: Cell<i64>,
    budget: i64,
    /// How `fractional` buckets.
    pub fractional: crate::Fractional,
}

impl<'a> Scope<'a> {
    pub fn new(flag_key: &'a str, timestamp: i64) -> Scope<'a> {
        Scope::with_budget(flag_key, timestamp, MAX_STEPS)
    }

    pub fn with_budget(flag_key: &'a str, timestamp: i64, steps: u64) -> Scope<'a> {
        let budget = steps.min(i64::MAX as u64) as i64;
        Scope { flag_key, timestamp, left: Cell::new(budget), budget, fractional: crate::Fractional::V2 }
    }

    /// The same scope, `fractional` bucketing as `f` says.
    pub fn with_fractional(mut self, f: crate::Fractional) -> Scope<'a> {
        self.fractional = f;
        self
    }

    /// The steps taken so far (the whole budget once it is exceeded).
    pub fn spent(&self) -> u64 {
        (self.budget - self.left.get().max(0)) as u64
    }

    /// Whether the evaluation ran out of steps (its result is then meaningless).
    pub fn exceeded(&self) -> bool {
        self.left.get() < 0
    }

    /// Spends `n` steps; false (from now on) when they do not fit. A plain subtraction, the cheapest there is:
    /// `n` is a length or a count (below 2^48), and after the budget is gone only a bounded unwinding follows,
    /// so `left` never comes near `i64::MIN`.
    #[inline]
    fn spend(&self, n: u64) -> bool {
        let left = self.left.get() - n as i64;
        self.left.set(left);
        left >= 0
    }
}

/// Charges the work of copying, comparing or printing `v`: a step per value in it, strings by 16 bytes. The walk
/// stops as soon as the budget is spent, so it never costs more than it charges.
fn spend_deep(v: &Value, scope: &Scope) -> bool {
    match v {
        Value::String(s) => scope.spend(1 + (s.len() as u64 >> 4)),
        Value::Array(a) => scope.spend(1) && a.iter().all(|x| spend_deep(x, scope)),
        Value::Object(m) => {
            scope.spend(1) && m.iter().all(|(k, x)| scope.spend(k.len() as u64 >> 4) && spend_deep(x, scope))
        }
        _ => scope.spend(1),
    }
}

fn container(v: &Value) -> bool {
    matches!(v, Value::Array(_) | Value::Object(_))
}

/// Charges a comparison: two lists or objects are compared value by value, anything else at once (strings were
/// charged by their length when read).
fn spend_cmp(a: &Value, b: &Value, scope: &Scope) -> bool {
    let len = |v: &Value| v.as_array().map(Vec::len).or_else(|| v.as_object().map(Map::len));
    match (len(a), len(b)) {
        // Two lists (or two objects) are equal item by item: the shorter bounds the walk.
        (Some(x), Some(y)) if a.is_array() == b.is_array() => spend_deep(if x <= y { a } else { b }, scope),
        _ => true,
    }
}

static NULL: Value = Value::Null;

/// Evaluates a rule whose result is a variant name, borrowing the result from the rule or the context where it
/// can (a literal branch of an `if`, a `fractional` bucket, a `var`): a flag's evaluation then allocates nothing.
pub fn eval_ref<'a>(e: &'a Expr, data: &'a Value, scope: &Scope) -> Cow<'a, Value> {
    if !scope.spend(1) {
        return Cow::Borrowed(&NULL);
    }
    match e {
        Expr::Lit(v) => Cow::Borrowed(v),
        Expr::Op(Op::If, args) => {
            let mut i = 0;
            while i + 1 < args.len() {
                if test(&args[i], data, scope) {
                    return eval_ref(&args[i + 1], data, scope);
                }
                i += 2;
            }
            match args.get(i) {
                Some(e) => eval_ref(e, data, scope),
                None => Cow::Borrowed(&NULL),
            }
        }
        Expr::Op(Op::Fractional, args) => fractional(args, data, scope),
        Expr::Op(Op::Var, _) => arg_ref(std::slice::from_ref(e), 0, data, scope),
        _ => Cow::Owned(eval(e, data, scope)),
    }
}

/// `in`: whether the first argument is an element of the list (or a substring of the string) that is the second.
fn contains(args: &[Expr], data: &Value, scope: &Scope) -> bool {
    let needle = arg_ref(args, 0, data, scope);
    // A list written in the rule (a private beta's users) is searched in place, not built first.
    if let Some(Expr::Array(items)) = args.get(1) {
        if !scope.spend(items.len() as u64) {
            return false;
        }
        if let Value::String(n) = needle.as_ref() {
            return items.iter().enumerate().any(|(i, item)| match item {
                Expr::Lit(Value::String(s)) => same(s, n),
                Expr::Lit(_) => false,
                _ => strict_eq(&arg_ref(items, i, data, scope), &needle),
            });
        }
        return (0..items.len()).any(|i| {
            let item = arg_ref(items, i, data, scope);
            spend_cmp(&item, &needle, scope) && strict_eq(&item, &needle)
        });
    }
    match arg_ref(args, 1, data, scope).as_ref() {
        Value::Array(a) if container(&needle) => {
            scope.spend(a.len() as u64) && a.iter().any(|x| spend_cmp(x, &needle, scope) && strict_eq(x, &needle))
        }
        Value::Array(a) => scope.spend(a.len() as u64) && a.iter().any(|x| strict_eq(x, &needle)),
        Value::String(s) => {
            if container(&needle) && !spend_deep(&needle, scope) {
                return false;
            }
            let n = text(&needle);
            scope.spend((s.len() + n.len()) as u64 >> 4) && s.contains(&n)
        }
        _ => false,
    }
}

/// Whether a condition holds (an `if`'s test). `or`, `and`, `!`, `!!` and `in` are decided here without
/// building their result values: a beta list or a group check then copies nothing.
fn test(e: &Expr, data: &Value, scope: &Scope) -> bool {
    if !scope.spend(1) {
        return false;
    }
    match e {
        Expr::Op(Op::Or, args) => args.iter().any(|a| test(a, data, scope)),
        Expr::Op(Op::And, args) => args.iter().all(|a| test(a, data, scope)),
        Expr::Op(Op::Not, args) => !args.first().is_some_and(|a| test(a, data, scope)),
        Expr::Op(Op::NotNot, args) => args.first().is_some_and(|a| test(a, data, scope)),
        Expr::Op(Op::In, args) => contains(args, data, scope),
        _ => truthy(&arg_ref(std::slice::from_ref(e), 0, data, scope)),
    }
}

pub fn eval(e: &Expr, data: &Value, scope: &Scope) -> Value {
    if !scope.spend(1) {
        return Value::Null;
    }
    match e {
        Expr::Lit(Value::String(s)) if !scope.spend(s.len() as u64 >> 4) => Value::Null,
        Expr::Lit(v) => v.clone(),
        Expr::Array(items) => Value::Array(items.iter().map(|i| eval(i, data, scope)).collect()),
        Expr::Op(op, args) => eval_op(*op, args, data, scope),
    }
}

/// An argument borrowed where it can be (a literal, or a `var` read from the context) and computed otherwise:
/// the common rules (`==`, `in`, `starts_with`, `if`) then compare without copying the context's strings.
fn arg_ref<'a>(args: &'a [Expr], i: usize, data: &'a Value, scope: &Scope) -> Cow<'a, Value> {
    match args.get(i) {
        None => Cow::Borrowed(&NULL),
        Some(Expr::Lit(v)) => Cow::Borrowed(v),
        Some(Expr::Op(Op::Var, va)) if va.len() == 1 => match &va[0] {
            Expr::Lit(Value::String(path)) if !path.starts_with("$flagd.") => match lookup(data, path) {
                // Borrowed, not copied: only the lookup and, for a string, reading it are charged (whatever
                // the operator does with a list is charged by that operator).
                Some(v) if !v.is_null() => {
                    let read = match v {
                        Value::String(s) => s.len(),
                        _ => 0,
                    };
                    if scope.spend(1 + ((path.len() + read) as u64 >> 4)) {
                        Cow::Borrowed(v)
                    } else {
                        Cow::Borrowed(&NULL)
                    }
                }
                _ => Cow::Borrowed(&NULL),
            },
            _ => Cow::Owned(eval(&args[i], data, scope)),
        },
        Some(e) => Cow::Owned(eval(e, data, scope)),
    }
}

fn arg(args: &[Expr], i: usize, data: &Value, scope: &Scope) -> Value {
    args.get(i).map(|a| eval(a, data, scope)).unwrap_or(Value::Null)
}

fn eval_op(op: Op, args: &[Expr], data: &Value, scope: &Scope) -> Value {
    let all = || -> Vec<Value> { args.iter().map(|a| eval(a, data, scope)).collect() };
    match op {
        Op::Var => {
            let path = arg(args, 0, data, scope);
            let found = match &path {
                Value::Null => Some(Cow::Borrowed(data)),
                Value::String(s) if s == "$flagd.flagKey" => {
                    Some(Cow::Owned(Value::String(scope.flag_key.to_string())))
                }
                Value::String(s) if s == "$flagd.timestamp" => Some(Cow::Owned(Value::from(scope.timestamp))),
                Value::Number(n) => lookup(data, &n.to_string()).map(Cow::Borrowed),
                Value::String(s) if scope.spend(s.len() as u64 >> 4) => lookup(data, s).map(Cow::Borrowed),
                _ => None,
            };
            match found {
                // The copy is charged by its size: `{"var": ""}` copies the whole context.
                Some(v) if !v.is_null() => {
                    if spend_deep(&v, scope) {
                        v.into_owned()
                    } else {
                        Value::Null
                    }
                }
                _ => arg(args, 1, data, scope),
            }
        }
        Op::Missing => {
            let keys = match all().as_slice() {
                [Value::Array(a)] => a.clone(),
                other => other.to_vec(),
            };
            if !keys.iter().all(|k| spend_deep(k, scope)) {
                return Value::Null;
            }
            let missing = keys
                .into_iter()
                .filter(|k| lookup(data, &text(k)).is_none_or(|v| v.is_null() || v == &Value::String(String::new())))
                .collect();
            Value::Array(missing)
        }
        Op::MissingSome => {
            let need = num(&arg(args, 0, data, scope)).unwrap_or(0.0) as usize;
            let keys = match arg(args, 1, data, scope) {
                Value::Array(a) => a,
                _ => return Value::Array(vec![]),
            };
            if !keys.iter().all(|k| spend_deep(k, scope)) {
                return Value::Null;
            }
            let missing: Vec<Value> =
                keys.iter().filter(|k| lookup(data, &text(k)).is_none_or(|v| v.is_null())).cloned().collect();
            if keys.len() - missing.len() >= need {
                Value::Array(vec![])
            } else {
                Value::Array(missing)
            }
        }
        Op::If => {
            let mut i = 0;
            while i + 1 < args.len() {
                if test(&args[i], data, scope) {
                    return eval(&args[i + 1], data, scope);
                }
                i += 2;
            }
            if i < args.len() {
                eval(&args[i], data, scope)
            } else {
                Value::Null
            }
        }
        Op::Eq | Op::Ne | Op::StrictEq | Op::StrictNe => {
            let (a, b) = (arg_ref(args, 0, data, scope), arg_ref(args, 1, data, scope));
            if !spend_cmp(&a, &b, scope) {
                return Value::Null;
            }
            Value::Bool(match op {
                Op::Eq => loose_eq(&a, &b),
                Op::Ne => !loose_eq(&a, &b),
                Op::StrictEq => strict_eq(&a, &b),
                _ => !strict_eq(&a, &b),
            })
        }
        Op::Not => Value::Bool(!truthy(&arg(args, 0, data, scope))),
        Op::NotNot => Value::Bool(truthy(&arg(args, 0, data, scope))),
        Op::Or => {
            let mut last = Value::Bool(false);
            for a in args {
                last = eval(a, data, scope);
                if truthy(&last) {
                    return last;
                }
            }
            last
        }
        Op::And => {
            let mut last = Value::Bool(true);
            for a in args {
                last = eval(a, data, scope);
                if !truthy(&last) {
                    return last;
                }
            }
            last
        }
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            use std::cmp::Ordering::*;
            let vals = all();
            let ok = |o: Option<std::cmp::Ordering>| match (op, o) {
                (_, None) => false,
                (Op::Gt, Some(o)) => o == Greater,
                (Op::Ge, Some(o)) => o != Less,
                (Op::Lt, Some(o)) => o == Less,
                (_, Some(o)) => o != Greater,
            };
            // `{"<": [a, b, c]}` is "between": a < b < c.
            Value::Bool(vals.len() >= 2 && vals.windows(2).all(|w| ok(compare(&w[0], &w[1]))))
        }
        Op::Max | Op::Min => {
            let nums: Option<Vec<f64>> = all().iter().map(num).collect();
            match nums {
                Some(n) if !n.is_empty() => number(
                    n.into_iter().reduce(|a, b| if (op == Op::Max) == (b > a) { b } else { a }).expect("non-empty"),
                ),
                _ => Value::Null,
            }
        }
        Op::Add | Op::Mul => {
            let nums: Option<Vec<f64>> = all().iter().map(num).collect();
            match nums {
                Some(n) => number(if op == Op::Add { n.iter().sum() } else { n.iter().product() }),
                None => Value::Null,
            }
        }
        Op::Sub | Op::Div | Op::Mod => {
            let vals = all();
            match (vals.first().and_then(num), vals.get(1).and_then(num)) {
                (Some(a), None) if op == Op::Sub && vals.len() == 1 => number(-a),
                (Some(a), Some(b)) => match op {
                    Op::Sub => number(a - b),
                    Op::Div if b != 0.0 => number(a / b),
                    Op::Mod if b != 0.0 => number(a % b),
                    _ => Value::Null,
                },
                _ => Value::Null,
            }
        }
        Op::Map | Op::Filter | Op::All | Op::None | Op::Some => {
            let items = match arg(args, 0, data, scope) {
                Value::Array(a) => a,
                _ => Vec::new(),
            };
            let Some(body) = args.get(1) else { return Value::Null };
            // One step per item up front: a list longer than what is left is not walked at all.
            if !scope.spend(items.len() as u64) {
                return Value::Null;
            }
            match op {
                Op::Map => Value::Array(items.iter().map(|i| eval(body, i, scope)).collect()),
                Op::Filter => Value::Array(items.into_iter().filter(|i| truthy(&eval(body, i, scope))).collect()),
                Op::All => Value::Bool(!items.is_empty() && items.iter().all(|i| truthy(&eval(body, i, scope)))),
                Op::None => Value::Bool(!items.iter().any(|i| truthy(&eval(body, i, scope)))),
                _ => Value::Bool(items.iter().any(|i| truthy(&eval(body, i, scope)))),
            }
        }
        Op::Reduce => {
            let items = match arg(args, 0, data, scope) {
                Value::Array(a) => a,
                _ => Vec::new(),
            };
            let Some(body) = args.get(1) else { return Value::Null };
            if !scope.spend(items.len() as u64) {
                return Value::Null;
            }
            let mut acc = arg(args, 2, data, scope);
            for cur in items {
                if scope.exceeded() {
                    return Value::Null;
                }
                let mut ctx = Map::new();
                ctx.insert("current".into(), cur);
                ctx.insert("accumulator".into(), acc);
                acc = eval(body, &Value::Object(ctx), scope);
            }
            acc
        }
        Op::Merge => {
            let vals = all();
            // A rule that grows without bound (a `reduce` merging its accumulator into itself) stops here,
            // before the list is built.
            let total: usize = vals.iter().map(|v| v.as_array().map_or(1, Vec::len)).sum();
            if total > MAX_ITEMS || !scope.spend(total as u64) {
                return Value::Null;
            }
            let out: Vec<Value> = vals
                .into_iter()
                .flat_map(|v| match v {
                    Value::Array(a) => a,
                    other => vec![other],
                })
                .collect();
            Value::Array(out)
        }
        Op::In => Value::Bool(contains(args, data, scope)),
        Op::Cat => {
            let vals = all();
            if !vals.iter().all(|v| spend_deep(v, scope)) {
                return Value::Null;
            }
            let out: String = vals.iter().map(text).collect();
            if out.len() > MAX_ITEMS * 16 {
                Value::Null
            } else {
                Value::String(out)
            }
        }
        Op::Substr => {
            let v = arg(args, 0, data, scope);
            if !spend_deep(&v, scope) {
                return Value::Null;
            }
            let s: Vec<char> = text(&v).chars().collect();
            let n = s.len() as i64;
            let start = num(&arg(args, 1, data, scope)).unwrap_or(0.0).clamp(-(n as f64), n as f64) as i64;
            let start = if start < 0 { (n + start).max(0) } else { start.min(n) };
            let end = match args.get(2).map(|a| eval(a, data, scope)) {
                Some(v) => {
                    let len = num(&v).unwrap_or(0.0).clamp(-(n as f64), n as f64) as i64;
                    if len < 0 {
                        (n + len).max(start)
                    } else {
                        start.saturating_add(len).min(n)
                    }
                }
                None => n,
            };
            Value::String(s[start as usize..end.max(start) as usize].iter().collect())
        }
        Op::Log => arg(args, 0, data, scope),
        Op::StartsWith | Op::EndsWith => {
            if args.len() != 2 {
                return Value::Null;
            }
            match (arg_ref(args, 0, data, scope).as_ref(), arg_ref(args, 1, data, scope).as_ref()) {
                (Value::String(s), Value::String(p)) => {
                    Value::Bool(if op == Op::StartsWith { s.starts_with(p.as_str()) } else { s.ends_with(p.as_str()) })
                }
                _ => Value::Null,
            }
        }
        Op::SemVer => {
            if args.len() != 3 {
                return Value::Null;
            }
            let version = |v: Value| match v {
                Value::String(s) => semver::Version::parse(&s),
                Value::Number(n) => semver::Version::parse(&n.to_string()),
                _ => None,
            };
            let (a, o, b) = (arg(args, 0, data, scope), arg(args, 1, data, scope), arg(args, 2, data, scope));
            match (version(a), o.as_str(), version(b)) {
                (Some(a), Some(o), Some(b)) => semver::compare(&a, o, &b).map(Value::Bool).unwrap_or(Value::Null),
                _ => Value::Null,
            }
        }
        Op::Fractional => fractional(args, data, scope).into_owned(),
    }
}

/// flagd's `fractional`: `[bucketing value?, [variant, weight?], ...]`. Without a bucketing value it is the
/// flag key and the targeting key; without a targeting key (or with one that is not a string) there is no
/// bucket, and the flag answers its default, as flagd does. The hash is MurmurHash3 (seed 0) of the value's
/// bytes as [`Scope::fractional`] says (v2: a string's UTF-8; v3: any value's deterministic CBOR), the bucket
/// `(hash × total weight) >> 32`; weights are integers, a missing one is 1, a negative one 0. Variant names
/// and weights may be rules themselves.
fn fractional<'a>(args: &'a [Expr], data: &'a Value, scope: &Scope) -> Cow<'a, Value> {
    let hashed = match scope.fractional {
        crate::Fractional::V2 => hash_v2(args, data, scope),
        crate::Fractional::V3 => hash_v3(args, data, scope),
    };
    match hashed {
        Some((hash, buckets)) => distribute(hash, buckets, data, scope),
        None => Cow::Borrowed(&NULL),
    }
}

/// The targeting key when `fractional` has no bucketing value: a string that is not empty, charged by length.
fn targeting_key<'a>(data: &'a Value, scope: &Scope) -> Option<&'a str> {
    match lookup(data, "targetingKey") {
        Some(Value::String(s)) if !s.is_empty() && scope.spend(s.len() as u64 >> 4) => Some(s.as_str()),
        _ => None,
    }
}

/// v2: the hash of a string (the flag key followed by the targeting key when there is no bucketing value), and
/// the buckets after it. Anything but a string has no bucket.
fn hash_v2<'a>(args: &'a [Expr], data: &'a Value, scope: &Scope) -> Option<(u32, &'a [Expr])> {
    match args.first()? {
        Expr::Array(_) => {
            let tk = targeting_key(data, scope)?.as_bytes();
            // The flag key and the targeting key are hashed as one string: built on the stack when short.
            let fk = scope.flag_key.as_bytes();
            let mut stack = [0u8; 192];
            let n = fk.len() + tk.len();
            let hash = if n <= stack.len() {
                stack[..fk.len()].copy_from_slice(fk);
                stack[fk.len()..n].copy_from_slice(tk);
                murmur3_32(&stack[..n], 0)
            } else {
                murmur3_32(&[fk, tk].concat(), 0)
            };
            Some((hash, args))
        }
        _ => match arg_ref(args, 0, data, scope).as_ref() {
            Value::String(s) => Some((murmur3_32(s.as_bytes(), 0), &args[1..])),
            _ => None,
        },
    }
}

/// v3: the hash of a value's deterministic CBOR (the pair `[flag key, targeting key]` when there is no bucketing
/// value), and the buckets after it. Null has no bucket (a missing attribute must not put everyone in one), and
/// neither has a list: flagd reads a list there as the first bucket, and crew's buckets are written as lists.
fn hash_v3<'a>(args: &'a [Expr], data: &'a Value, scope: &Scope) -> Option<(u32, &'a [Expr])> {
    let mut bytes = Vec::with_capacity(64);
    match args.first()? {
        Expr::Array(_) => {
            let tk = match lookup(data, "targetingKey") {
                Some(Value::String(s)) if scope.spend(s.len() as u64 >> 4) => s.as_str(),
                _ => return None,
            };
            crate::cbor::array_head(2, &mut bytes);
            crate::cbor::text(scope.flag_key, &mut bytes);
            crate::cbor::text(tk, &mut bytes);
            Some((murmur3_32(&bytes, 0), args))
        }
        _ => {
            let v = arg_ref(args, 0, data, scope);
            if matches!(v.as_ref(), Value::Null | Value::Array(_)) || !spend_deep(v.as_ref(), scope) {
                return None;
            }
            crate::cbor::encode(v.as_ref(), &mut bytes);
            Some((murmur3_32(&bytes, 0), &args[1..]))
        }
    }
}

/// The bucket a hash falls in, by the buckets' weights, and that bucket's variant.
fn distribute<'a>(hash: u32, buckets: &'a [Expr], data: &'a Value, scope: &Scope) -> Cow<'a, Value> {
    // Weights first (the variants are only evaluated for the chosen bucket). Weights are clamped to
    // 0..=i32::MAX so their sum and the bucket arithmetic cannot overflow.
    if !scope.spend(buckets.len() as u64) {
        return Cow::Borrowed(&NULL);
    }
    let mut weights = [0u64; 16];
    let mut heap_weights = Vec::new();
    let many = buckets.len() > weights.len();
    let mut total = 0u64;
    for (i, b) in buckets.iter().enumerate() {
        let Expr::Array(parts) = b else { return Cow::Borrowed(&NULL) };
        if parts.is_empty() {
            return Cow::Borrowed(&NULL);
        }
        let w = match parts.get(1) {
            None => 1,
            Some(_) => match arg_ref(parts, 1, data, scope).as_ref() {
                Value::Number(n) => n.as_f64().map(|f| f.clamp(0.0, i32::MAX as f64) as u64).unwrap_or(0),
                _ => return Cow::Borrowed(&NULL),
            },
        };
        if many {
            heap_weights.push(w);
        } else {
            weights[i] = w;
        }
        total = total.saturating_add(w);
    }
    if total == 0 {
        return Cow::Borrowed(&NULL);
    }
    let weights: &[u64] = if many { &heap_weights } else { &weights[..buckets.len()] };
    let hash = hash as u128;
    let bucket = ((hash * total as u128) >> 32) as u64;
    let mut upper = 0u64;
    for (b, w) in buckets.iter().zip(weights) {
        upper = upper.saturating_add(*w);
        if bucket < upper {
            let Expr::Array(parts) = b else { return Cow::Borrowed(&NULL) };
            return eval_ref(&parts[0], data, scope);
        }
    }
    Cow::Borrowed(&NULL)
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn same_is_string_equality() {
        let words = [
            "",
            "a",
            "b",
            "ab",
            "ac",
            "abc",
            "abd",
            "bbc",
            "axc",
            "abcd",
            "abce",
            "abcdefg",
            "abcdefh",
            "bbcdefg",
            "abcxefg",
            "abcdefgh",
            "targetingKey",
            "targetingKez",
            "uargetingKey",
            "targetXngKey",
            "targetingKey_16b",
            "targetingKey_16c",
            "targetingKey_17by",
            "targetingKey_17bz",
            "é",
            "ü",
            "éa",
        ];
        for a in words {
            for b in words {
                assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }
}
