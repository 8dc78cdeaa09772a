//! The `evidence redact` command: one recording, one spec, one output.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::i18n::{Lang, Text};

use super::{
    redact, EncoderSettings, Method, Request, Spec, DEFAULT_QUALITY, DEFAULT_SPEED_PRESET,
};

/// Highest x264 constant-quality value accepted; above it faces and text
/// outside the masks are no longer readable, which defeats a public copy.
const MAX_QUALITY: u32 = 35;

/// Purpose of the audit `read` event when the input is a stored object.
const READ_PURPOSE: &str = "redact";

#[derive(Debug, clap::Args)]
pub struct RedactArgs {
    /// The recording to redact (it is only read)
    pub input: PathBuf,

    /// Redaction spec (JSON): masks and audio ranges with reasons and authors
    #[arg(long, value_name = "SPEC.json")]
    pub spec: PathBuf,

    /// Output file (MP4); must not exist yet. The redaction log is written beside it as OUT.mp4.redaction.json
    #[arg(long, value_name = "OUT.mp4")]
    pub out: PathBuf,

    /// Re-encode every frame instead of only the GOPs a mask or mute touches
    #[arg(long)]
    pub full: bool,

    /// x264 speed preset of re-encoded frames (ultrafast … veryslow)
    #[arg(long, default_value = DEFAULT_SPEED_PRESET)]
    pub preset: String,

    /// x264 constant quality (CRF) of re-encoded frames: lower is better, 0–35
    #[arg(long, default_value_t = DEFAULT_QUALITY)]
    pub quality: u32,
}

/// x264's preset names.
const PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// Checks the encoder options shared by every command that redacts.
pub fn encoder_settings(preset: &str, quality: u32) -> Result<EncoderSettings, Text> {
    if !PRESETS.contains(&preset) {
        return Err(Text::new(
            format!(
                "--preset {preset:?} 不是 x264 预设（{}）",
                PRESETS.join("、")
            ),
            format!(
                "--preset {preset:?} is not an x264 preset ({})",
                PRESETS.join(", ")
            ),
        ));
    }
    if quality > MAX_QUALITY {
        return Err(Text::new(
            format!("--quality 必须在 0 到 {MAX_QUALITY} 之间，实际为 {quality}"),
            format!("--quality must be from 0 to {MAX_QUALITY}, found {quality}"),
        ));
    }
    Ok(EncoderSettings {
        speed_preset: preset.to_string(),
        quality,
    })
}

/// Appends the audit `read` event before the input is read, when it is an
/// object of the local store (a path under `DATA_DIR/store/TIER/`). A copy
/// kept elsewhere is not stored footage, so the catalog stays closed.
///
/// NOTE: a recording kept only in an S3 store cannot be named here; it is
/// redacted through `disclose export`, which logs its read itself.
fn log_stored_read(data_dir: &Path, config: &Config, input: &Path, lang: Lang) -> Result<(), Text> {
    if config.store.backend != crate::config::Backend::Local {
        return Ok(());
    }
    let (Ok(root), Ok(input)) = (data_dir.join("store").canonicalize(), input.canonicalize()) else {
        return Ok(());
    };
    let Ok(inside) = input.strip_prefix(&root) else {
        return Ok(());
    };
    let mut parts = inside.components();
    let Some(tier) = parts
        .next()
        .and_then(|c| crate::store::Tier::parse(&c.as_os_str().to_string_lossy()))
    else {
        return Ok(());
    };
    let key = parts.as_path().to_string_lossy().to_string();

    let services = crate::runner::Services::open(data_dir, lang)
        .map_err(|e| Text::new(format!("无法打开数据目录：{e:#}"), format!("cannot open the data directory: {e:#}")))?;
    let sha256 = services
        .catalog
        .recordings()
        .map_err(|e| Text::new(format!("无法读取目录数据库：{e}"), format!("cannot read the catalog: {e}")))?
        .into_iter()
        .find(|row| row.tier == tier.as_str() && row.key == key)
        .map(|row| row.sha256);
    let read = crate::audit::StoredRead {
        tier,
        key: &key,
        sha256: sha256.as_deref(),
        purpose: READ_PURPOSE,
        extra: None,
    };
    crate::audit::read_stored(&services, &read).map_err(|e| e.text())?;
    Ok(())
}

/// Refuses an output inside the local store or its separate backup. A
/// file written there has no manifest, so `verify` would report it for
/// ever and `storage delete` could not remove it.
fn refuse_output_in_store(data_dir: &Path, config: &Config, out: &Path) -> Result<(), Text> {
    let folder = out.parent().filter(|p| !p.as_os_str().is_empty());
    refuse_folder_in_store(data_dir, config, folder.unwrap_or(Path::new(".")), out)
}

/// Refuses `folder` (where `out` is written) when it lies inside the local
/// store or its separate backup; exports share the rule.
pub fn refuse_folder_in_store(
    data_dir: &Path,
    config: &Config,
    folder: &Path,
    out: &Path,
) -> Result<(), Text> {
    let Ok(folder) = folder.canonicalize() else {
        // The writer itself refuses a folder that does not exist.
        return Ok(());
    };
    let mut stores = vec![data_dir.join("store")];
    stores.extend(
        config
            .store
            .local
            .backup_dir
            .as_ref()
            .map(|dir| data_dir.join(dir)),
    );
    for store in stores {
        if store
            .canonicalize()
            .is_ok_and(|root| folder.starts_with(root))
        {
            return Err(Text::new(
                format!(
                    "输出位置 {} 位于对象存储 {} 之内；请写到存储之外（存储中的对象只能由本程序经校验写入）",
                    out.display(),
                    store.display()
                ),
                format!(
                    "output {} lies inside the object store {}; write it outside the store (objects in the store are written only by this program, verified)",
                    out.display(),
                    store.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Runs the command; returns the exit code or the message to print.
pub fn run(args: &RedactArgs, data_dir: &Path, lang: Lang, json: bool) -> Result<u8, Text> {
    let encoder = encoder_settings(&args.preset, args.quality)?;
    let config = Config::load(data_dir).map_err(|e| e.text())?;
    let actor = config.actor();
    let spec = Spec::load(&args.spec).map_err(|e| e.message())?;
    let request = Request {
        input: &args.input,
        output: &args.out,
        spec: &spec,
        actor: &actor,
        watermark: None,
        encoder,
        force_full: args.full,
    };
    refuse_output_in_store(data_dir, &config, &args.out)?;
    log_stored_read(data_dir, &config, &args.input, lang)?;
    let log = redact(&request).map_err(|e| e.message())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&log).expect("a redaction log serializes")
        );
        return Ok(0);
    }
    let method = match log.method {
        Method::Smart => Text::new(
            "智能渲染（只重新编码受影响的 GOP）",
            "smart render (only the GOPs touched re-encoded)",
        ),
        Method::Full => Text::new("完整重新编码", "full re-encode"),
    };
    println!(
        "{} {}",
        lang.pick("已生成脱敏副本：", "redacted copy written:"),
        args.out.display()
    );
    println!("  {} {}", lang.pick("方法：", "method:"), method.get(lang));
    if let Some(reason) = &log.fallback_reason {
        println!("  {} {}", lang.pick("原因：", "why:"), reason.get(lang));
    }
    println!(
        "  {} {} / {}",
        lang.pick("遮罩帧数 / 总帧数：", "frames masked / total:"),
        log.frames_masked,
        log.output.frames
    );
    if let Some(padding) = &log.padding {
        println!(
            "  {} {}x{} → {}x{}",
            lang.pick("画面补齐为偶数尺寸：", "picture padded to even size:"),
            padding.from_width,
            padding.from_height,
            log.output.width,
            log.output.height
        );
    }
    println!(
        "  {} {}",
        lang.pick("原始文件 SHA-256：", "original SHA-256:"),
        log.original.sha256
    );
    println!(
        "  {} {}",
        lang.pick("输出文件 SHA-256：", "output SHA-256:"),
        log.output.sha256
    );
    println!(
        "  {} {}",
        lang.pick("脱敏记录：", "redaction log:"),
        super::log_path(&args.out).display()
    );
    Ok(0)
}
