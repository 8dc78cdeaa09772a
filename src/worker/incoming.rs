//! Uploads that stations put into an S3 bucket instead of a folder.
//!
//! `evidence worker --s3-incoming PREFIX` lists the objects under PREFIX
//! in the store's bucket (`[store] bucket`, on the primary endpoint) and
//! queues each as an `ingest` job. An S3 object becomes visible only when
//! its upload is complete, so no settle time is needed. The ingest job
//! copies the object into the spool folder under its own file name (which
//! carries device, officer and time), ingests that copy and removes it.
//! The incoming object itself is left where it is: the station's bucket
//! rules decide when uploads are cleared.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;

use crate::config::StoreConfig;
use crate::i18n::Text;

/// One complete upload in the incoming prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingObject {
    pub key: String,
    pub bytes: u64,
    /// Last-modified time as the server gives it, to tell a replaced
    /// object from the one ingested before.
    pub modified: String,
}

impl IncomingObject {
    /// Builds the job subject: an object replaced under the same key is a new upload.
    pub fn subject(&self, bucket: &str) -> String {
        format!(
            "s3://{bucket}/{}|{}|{}",
            self.key, self.bytes, self.modified
        )
    }
}

pub struct Incoming {
    runtime: tokio::runtime::Runtime,
    client: Client,
    pub bucket: String,
    prefix: String,
}

impl Incoming {
    pub fn open(config: &StoreConfig, prefix: &str) -> Result<Incoming, Text> {
        let bucket = config.bucket.clone().ok_or_else(|| {
            Text::new(
                "--s3-incoming 需要在配置 [store] 中设置 bucket",
                "--s3-incoming needs a bucket in [store] of the config",
            )
        })?;
        let client = crate::store::s3::build_client(&config.primary_endpoint()).map_err(|e| {
            Text::new(
                format!("无法连接 S3：{e}"),
                format!("cannot connect to S3: {e}"),
            )
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Text::new(
                    format!("无法启动 S3 客户端：{e}"),
                    format!("cannot start the S3 client: {e}"),
                )
            })?;
        Ok(Incoming {
            runtime,
            client,
            bucket,
            prefix: prefix.to_string(),
        })
    }

    /// Lists every object under the prefix.
    pub fn scan(&self) -> Result<Vec<IncomingObject>, Text> {
        self.runtime.block_on(async {
            let mut found = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    let e = aws_sdk_s3::error::DisplayErrorContext(e);
                    Text::new(
                        format!("无法列出 s3://{}/{}：{e}", self.bucket, self.prefix),
                        format!("cannot list s3://{}/{}: {e}", self.bucket, self.prefix),
                    )
                })?;
                for object in page.contents() {
                    let Some(key) = object.key() else {
                        continue;
                    };
                    if key.ends_with('/') {
                        continue;
                    }
                    found.push(IncomingObject {
                        key: key.to_string(),
                        bytes: object.size().unwrap_or(0).max(0) as u64,
                        modified: object
                            .last_modified()
                            .map(|t| t.to_string())
                            .unwrap_or_default(),
                    });
                }
            }
            Ok(found)
        })
    }

    /// Copies an object into `dir` under its own file name.
    pub fn fetch(&self, key: &str, dir: &Path) -> Result<PathBuf, Text> {
        let name = key
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .unwrap_or("upload");
        let path = dir.join(name);
        let failed = |e: String| {
            Text::new(
                format!("无法取回 s3://{}/{key}：{e}", self.bucket),
                format!("cannot fetch s3://{}/{key}: {e}", self.bucket),
            )
        };
        self.runtime.block_on(async {
            let object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
            let mut body = object.body;
            let mut file = std::fs::File::create(&path).map_err(|e| failed(e.to_string()))?;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| failed(e.to_string()))?;
                file.write_all(&chunk).map_err(|e| failed(e.to_string()))?;
            }
            file.sync_all().map_err(|e| failed(e.to_string()))?;
            Ok(path)
        })
    }
}
