// The kafka module's one error mapping: a librdkafka error code (or error
// object) becomes a crmstream Status whose message names the operation and
// carries librdkafka's own description.
//
//   Unavailable      retriable and transport errors (broker down, timeouts,
//                    leader changes, full queues, rebalances in progress)
//   InvalidArgument  configuration and caller errors (bad property, bad
//                    partition count, message too large)
//   NotFound         unknown topic, partition or group
//   Aborted          the handle is being destroyed, or the client was fenced
//   Internal         fatal client errors and everything else
//
// Thread-safety: pure functions.
#pragma once

#include <librdkafka/rdkafka.h>

#include <string_view>

#include "crmstream/common/status.h"

namespace crmstream::kafka {

// The StatusCode a librdkafka error maps to (kOk for NO_ERROR).
StatusCode KafkaErrorCode(rd_kafka_resp_err_t err);

// OK for RD_KAFKA_RESP_ERR_NO_ERROR; else "<operation>: <err2str> (<err2name>)".
Status KafkaStatus(rd_kafka_resp_err_t err, std::string_view operation);

// Same for an rd_kafka_error_t (nullptr is OK); uses the error's own string,
// and Internal for fatal errors. Does not take ownership.
Status KafkaStatus(const rd_kafka_error_t* error, std::string_view operation);

}  // namespace crmstream::kafka
