//! Joining the consumer group (creating it when asked to) and leaving it at a clean stop.

use redis::aio::MultiplexedConnection;
use redis::{RedisError, Value};
use tracing::{debug, info};

use crate::options::SourceOptions;

/// Creates the group on every stream where it is missing (when the options say so) and says,
/// per stream, how many entries wait in this consumer's pending list.
pub(crate) async fn join(opts: &SourceOptions, c: &mut MultiplexedConnection) -> Result<(), RedisError> {
    for stream in &opts.streams {
        let mut created = false;
        if let Some(start) = &opts.create_group {
            let r: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&**stream)
                .arg(&opts.group)
                .arg(start.as_arg())
                .arg("MKSTREAM")
                .query_async(c)
                .await;
            match r {
                Ok(()) => created = true,
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        let own = own_pending(opts, stream, c).await?;
        info!(
            stream = %stream,
            group = %opts.group,
            consumer = %opts.consumer,
            own_pending = own,
            "{} consumer group",
            if created { "created" } else { "joined" }
        );
    }
    Ok(())
}

/// How many entries wait in this consumer's pending list of `stream` (`XPENDING` summary).
async fn own_pending(opts: &SourceOptions, stream: &str, c: &mut MultiplexedConnection) -> Result<u64, RedisError> {
    let v: Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(&opts.group)
        .query_async(c)
        .await?;
    let Value::Array(summary) = v else { return Ok(0) };
    let Some(Value::Array(consumers)) = summary.into_iter().nth(3) else {
        return Ok(0);
    };
    for pair in consumers {
        let Value::Array(pair) = pair else { continue };
        let name = pair.first().and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
        if name.as_deref() == Some(opts.consumer.as_str()) {
            return Ok(pair
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
                .unwrap_or(0));
        }
    }
    Ok(0)
}

/// Deletes the consumer from the group on `stream` if — checked in the same atomic step — its
/// pending list is empty (a consumer deleted with pending entries would orphan them).
const LEAVE: &str = r"
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1";

/// Leaves the group on every stream where this consumer has nothing pending, so groups do not
/// collect consumers that are gone. Best effort: a failure only means the consumer stays.
/// False if a command failed.
pub(crate) async fn leave(opts: &SourceOptions, c: &mut MultiplexedConnection) -> bool {
    let mut settled = true;
    for stream in &opts.streams {
        let r: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(LEAVE)
            .arg(1)
            .arg(&**stream)
            .arg(&opts.group)
            .arg(&opts.consumer)
            .query_async(c)
            .await;
        match r {
            Ok(-1) => info!(stream = %stream, group = %opts.group, consumer = %opts.consumer,
                "entries still pending for this consumer: it stays in the group to find them on restart"),
            Ok(_) => info!(stream = %stream, group = %opts.group, consumer = %opts.consumer, "left the consumer group"),
            Err(e) => {
                settled = false;
                debug!(stream = %stream, error = %e, "could not leave the consumer group");
            }
        }
    }
    settled
}
