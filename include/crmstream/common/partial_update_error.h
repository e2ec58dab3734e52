// The exception a state update throws when it failed after it had already
// changed some of the state it updates (e.g. memory ran out half-way through
// a customer's update). Whoever catches it cannot trust that state any more:
// the event processor stops the engine instead of checkpointing it (README,
// "Hostile input"). An update that fails before changing anything throws the
// original exception instead, which the processor may survive.
#pragma once

#include <stdexcept>
#include <string>

namespace crmstream {

class PartialUpdateError : public std::runtime_error {
 public:
  explicit PartialUpdateError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace crmstream
