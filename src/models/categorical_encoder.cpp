#include "crmstream/models/categorical_encoder.h"

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"

namespace crmstream::models {
namespace {
constexpr uint32_t kMaxCategories = 1u << 20;
constexpr uint32_t kMaxBuckets = 1u << 24;
constexpr uint32_t kMaxCategoryBytes = 1u << 16;
}  // namespace

size_t CategoricalEncoder::TransparentHash::operator()(std::string_view s) const {
  return static_cast<size_t>(Hash64(s));
}

Result<CategoricalEncoder> CategoricalEncoder::Create(const CategoricalEncoderOptions& options) {
  using Mode = CategoricalEncoderOptions::Mode;
  if (options.mode != Mode::kVocabulary && options.mode != Mode::kHashing) {
    return Status::InvalidArgument("CategoricalEncoderOptions.mode is unknown");
  }
  if (options.max_categories < 1 || options.max_categories > kMaxCategories) {
    return Status::InvalidArgument("CategoricalEncoderOptions.max_categories must be in [1, " +
                                   std::to_string(kMaxCategories) + "]");
  }
  if (options.buckets < 1 || options.buckets > kMaxBuckets) {
    return Status::InvalidArgument("CategoricalEncoderOptions.buckets must be in [1, " +
                                   std::to_string(kMaxBuckets) + "]");
  }
  CategoricalEncoder encoder(options);
  return encoder;
}

uint32_t CategoricalEncoder::Width() const {
  return options_.mode == CategoricalEncoderOptions::Mode::kHashing ? options_.buckets
                                                                    : options_.max_categories + 1;
}

uint32_t CategoricalEncoder::Lookup(std::string_view value) const {
  if (options_.mode == CategoricalEncoderOptions::Mode::kHashing) {
    return static_cast<uint32_t>(Hash64(value) % options_.buckets);
  }
  const auto it = index_.find(value);
  return it == index_.end() ? OverflowIndex() : it->second;
}

uint32_t CategoricalEncoder::Learn(std::string_view value) {
  const auto index = static_cast<uint32_t>(categories_.size());
  categories_.emplace_back(value);
  index_.emplace(categories_.back(), index);
  return index;
}

uint32_t CategoricalEncoder::Encode(std::string_view value) {
  if (options_.mode == CategoricalEncoderOptions::Mode::kHashing) return Lookup(value);
  const auto it = index_.find(value);
  if (it != index_.end()) return it->second;
  if (categories_.size() < options_.max_categories && value.size() <= kMaxCategoryBytes) {
    return Learn(value);
  }
  ++overflow_count_;
  return OverflowIndex();
}

Status CategoricalEncoder::Merge(const CategoricalEncoder& other,
                                 std::vector<uint32_t>* other_to_merged) {
  if (other.options_.mode != options_.mode || other.options_.buckets != options_.buckets ||
      other.options_.max_categories != options_.max_categories) {
    return Status::InvalidArgument("CategoricalEncoder::Merge: mode or sizes differ");
  }
  if (other_to_merged != nullptr) other_to_merged->clear();
  if (options_.mode == CategoricalEncoderOptions::Mode::kHashing) {
    if (other_to_merged != nullptr) {
      other_to_merged->resize(options_.buckets);
      for (uint32_t i = 0; i < options_.buckets; ++i) (*other_to_merged)[i] = i;
    }
    return Status::OK();
  }
  for (const std::string& category : other.categories_) {
    const auto it = index_.find(std::string_view(category));
    uint32_t merged = OverflowIndex();
    if (it != index_.end()) {
      merged = it->second;
    } else if (categories_.size() < options_.max_categories) {
      merged = Learn(category);
    }
    if (other_to_merged != nullptr) other_to_merged->push_back(merged);
  }
  if (other_to_merged != nullptr) other_to_merged->push_back(OverflowIndex());
  overflow_count_ += other.overflow_count_;
  return Status::OK();
}

std::string CategoricalEncoder::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<uint8_t>(static_cast<uint8_t>(options_.mode));
  w.Put<uint32_t>(options_.max_categories);
  w.Put<uint32_t>(options_.buckets);
  w.Put<uint64_t>(overflow_count_);
  w.Put<uint32_t>(static_cast<uint32_t>(categories_.size()));
  for (const std::string& c : categories_) w.PutBytes(c);
  return SealBlob(BlobKind::kCategoricalEncoder, kBlobVersion, payload);
}

Result<CategoricalEncoder> CategoricalEncoder::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view opened_payload,
                       OpenBlobPayload(blob, BlobKind::kCategoricalEncoder, kBlobVersion));
  BinaryReader in(opened_payload);
  uint8_t mode = 0;
  CategoricalEncoderOptions options;
  uint64_t overflow = 0;
  uint32_t n = 0;
  CRM_RETURN_NOT_OK(in.Get(&mode));
  CRM_RETURN_NOT_OK(in.Get(&options.max_categories));
  CRM_RETURN_NOT_OK(in.Get(&options.buckets));
  CRM_RETURN_NOT_OK(in.Get(&overflow));
  CRM_RETURN_NOT_OK(in.Get(&n));
  options.mode = static_cast<CategoricalEncoderOptions::Mode>(mode);
  auto created = Create(options);
  if (!created.ok())
    return Status::Corruption("CategoricalEncoder blob: " + created.status().message());
  CategoricalEncoder encoder = std::move(created).value();
  // Each category needs at least its 4-byte length.
  if (n > options.max_categories || in.remaining() / 4 < n ||
      (options.mode == CategoricalEncoderOptions::Mode::kHashing && n != 0)) {
    return Status::Corruption("CategoricalEncoder blob has an invalid category count");
  }
  std::string category;
  for (uint32_t i = 0; i < n; ++i) {
    CRM_RETURN_NOT_OK(in.GetBytes(&category));
    if (category.size() > kMaxCategoryBytes || encoder.index_.count(category) != 0) {
      return Status::Corruption("CategoricalEncoder blob has an invalid or repeated category");
    }
    (void)encoder.Learn(category);
  }
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  encoder.overflow_count_ = overflow;
  return encoder;
}

}  // namespace crmstream::models
