//! An OpenFeature provider over the SDK, so Rust applications use the standard `open-feature` API while crew
//! evaluates locally. Types are checked: asking for a bool from a string flag is TYPE_MISMATCH.

use crate::Client;
use crew_flags::{ErrorCode, Reason};
use open_feature::provider::{FeatureProvider, ProviderMetadata, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode, EvaluationReason,
    EvaluationResult, StructValue, Value as OfValue,
};
use serde_json::{json, Map, Value};

/// crew as an OpenFeature provider.
pub struct Provider {
    client: Client,
    metadata: ProviderMetadata,
}

impl Provider {
    pub fn new(client: Client) -> Self {
        Provider { client, metadata: ProviderMetadata::new("crew") }
    }

    /// OpenFeature's `track(trackingEventName, context, details)`: a conversion for a bucket test. The Rust
    /// `open-feature` crate (0.2) has no tracking API on its provider trait yet, so it is offered here with the
    /// specification's shape; it calls [`Client::track`].
    pub async fn track(
        &self,
        event: &str,
        ctx: &EvaluationContext,
        value: Option<f64>,
    ) -> Result<(), crate::TrackError> {
        self.client.track(event, &context(ctx), value).await
    }
}

fn context(ctx: &EvaluationContext) -> Value {
    let mut m = Map::new();
    if let Some(k) = &ctx.targeting_key {
        m.insert("targetingKey".into(), json!(k));
    }
    for (k, v) in &ctx.custom_fields {
        let v = match v {
            EvaluationContextFieldValue::Bool(b) => json!(b),
            EvaluationContextFieldValue::Int(i) => json!(i),
            EvaluationContextFieldValue::Float(f) => json!(f),
            EvaluationContextFieldValue::String(s) => json!(s),
            EvaluationContextFieldValue::DateTime(t) => json!(t.unix_timestamp()),
            EvaluationContextFieldValue::Struct(_) => continue,
        };
        m.insert(k.clone(), v);
    }
    Value::Object(m)
}

fn error(code: EvaluationErrorCode, message: String) -> EvaluationError {
    EvaluationError { code, message: Some(message) }
}

impl Provider {
    /// Evaluates and converts; `None` from `convert` is a TYPE_MISMATCH.
    fn resolve<T>(
        &self,
        key: &str,
        ctx: &EvaluationContext,
        convert: impl Fn(&Value) -> Option<T>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let r = self.client.evaluate(key, &context(ctx));
        if let Some((code, msg)) = r.error {
            let code = match code {
                ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
                ErrorCode::ParseError => EvaluationErrorCode::ParseError,
                ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
                ErrorCode::General => EvaluationErrorCode::General(msg.clone()),
            };
            return Err(error(code, msg));
        }
        let reason = match r.reason {
            Reason::Static => EvaluationReason::Static,
            Reason::TargetingMatch => EvaluationReason::TargetingMatch,
            Reason::Default => EvaluationReason::Default,
            Reason::Disabled => EvaluationReason::Disabled,
            Reason::Error => EvaluationReason::Error,
        };
        // No value (switched off, or no default variant): the caller's default applies, which OpenFeature
        // expresses as an error the client answers with its default.
        let Some(value) = r.value else {
            return Err(error(
                EvaluationErrorCode::General(reason.to_string()),
                format!("`{key}` has no value here: the code default applies"),
            ));
        };
        let converted =
            convert(&value).ok_or_else(|| error(EvaluationErrorCode::TypeMismatch, format!("`{key}` is {value}")))?;
        Ok(ResolutionDetails { value: converted, variant: r.variant, reason: Some(reason), flag_metadata: None })
    }
}

fn to_of(v: &Value) -> Option<OfValue> {
    Some(match v {
        Value::Bool(b) => OfValue::Bool(*b),
        Value::Number(n) => n.as_i64().map(OfValue::Int).or_else(|| n.as_f64().map(OfValue::Float))?,
        Value::String(s) => OfValue::String(s.clone()),
        Value::Array(a) => OfValue::Array(a.iter().map(to_of).collect::<Option<_>>()?),
        Value::Object(o) => OfValue::Struct(StructValue {
            fields: o.iter().map(|(k, x)| Some((k.clone(), to_of(x)?))).collect::<Option<_>>()?,
        }),
        Value::Null => return None,
    })
}

#[async_trait::async_trait]
impl FeatureProvider for Provider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(key, ctx, Value::as_bool)
    }

    async fn resolve_int_value(&self, key: &str, ctx: &EvaluationContext) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(key, ctx, Value::as_i64)
    }

    async fn resolve_float_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(key, ctx, Value::as_f64)
    }

    async fn resolve_string_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(key, ctx, |v| v.as_str().map(String::from))
    }

    async fn resolve_struct_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(key, ctx, |v| match to_of(v)? {
            OfValue::Struct(s) => Some(s),
            _ => None,
        })
    }
}
