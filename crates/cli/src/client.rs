//! The HTTP client every command but `serve` uses: the token, the `cli` channel, and server errors turned into
//! exit codes.

use crate::Exit;
use anyhow::{Context, Result};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use std::path::Path;

/// An API path from its segments, each percent-encoded as a path segment (a space is `%20`, a `/` inside a
/// segment `%2F`): `path(&["api", "v1", "flags", key])`.
pub fn path(segments: &[&str]) -> String {
    let mut u = url::Url::parse("http://crew/").expect("a base URL");
    u.path_segments_mut().expect("a base URL has segments").clear().extend(segments);
    u.path().to_string()
}

/// A path with a query string of these pairs, each percent-encoded as a query value.
pub fn path_query(segments: &[&str], pairs: &[(&str, &str)]) -> String {
    let mut p = path(segments);
    let q = query(pairs);
    if !q.is_empty() {
        p.push('?');
        p.push_str(&q);
    }
    p
}

/// A query string of these pairs (`a=1&b=x%20y`).
pub fn query(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client of `server`, with the token from CREW_TOKEN or `<data-dir>/admin.token`.
    pub fn new(server: &str, data_dir: &Path) -> Result<Client> {
        let token = match std::env::var("CREW_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let path = data_dir.join("admin.token");
                std::fs::read_to_string(&path).map(|t| t.trim().to_string()).map_err(|e| {
                    Exit::new(3, format!("no token: set CREW_TOKEN, or run where {} is readable ({e})", path.display()))
                })?
            }
        };
        Ok(Client::with_token(server, &token))
    }

    pub fn with_token(server: &str, token: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .user_agent(concat!("crew-cli/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("http client"),
            base: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request and returns the response if it succeeded; otherwise the server's error detail with the
    /// matching exit code.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Response> {
        self.send_with(method, path, body, &[]).await
    }

    /// [`Client::send`] that hands back the response for these statuses too (a protocol whose errors are data).
    pub async fn send_allowing(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        ok: &[u16],
    ) -> Result<Response> {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(&self.token).header("x-crew-via", "cli");
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .map_err(|e| Exit::new(1, format!("cannot reach the crew server at {}: {e}", self.base)))?;
        if ok.contains(&res.status().as_u16()) {
            return Ok(res);
        }
        self.check(res).await
    }

    /// [`Client::send`] with extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(&self.token).header("x-crew-via", "cli");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| {
            Exit::new(
                1,
                format!(
                    "cannot reach the crew server at {}: {e} (is `crew serve` running? --server / CREW_SERVER)",
                    self.base
                ),
            )
        })?;
        self.check(res).await
    }

    /// The response if it succeeded; otherwise the server's error detail with the matching exit code.
    async fn check(&self, res: Response) -> Result<Response> {
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0]["detail"].as_str().map(String::from))
            .unwrap_or(text);
        let code = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::CONFLICT | StatusCode::LOCKED => 3,
            s if s.is_client_error() => 2,
            _ => 1,
        };
        Err(Exit::new(code, format!("{detail} ({status})")).into())
    }

    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let res = self.send(method, path, body).await?;
        res.json().await.context("the server's answer is not JSON")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_and_queries_are_encoded() {
        assert_eq!(super::path(&["api", "v1", "flags", "a b/c?"]), "/api/v1/flags/a%20b%2Fc%3F");
        assert_eq!(super::path(&["api", "v1", "environments", "prod"]), "/api/v1/environments/prod");
        assert_eq!(
            super::path_query(&["api", "v1", "metrics", "query"], &[("name", "a b&c"), ("from", "1")]),
            "/api/v1/metrics/query?name=a+b%26c&from=1"
        );
        assert_eq!(super::path_query(&["api", "v1", "deploys"], &[]), "/api/v1/deploys");
    }
}
