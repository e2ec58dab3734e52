#include "crmstream/evaluation/retail.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <memory>
#include <numeric>
#include <ostream>
#include <string>
#include <unordered_map>

#include "crmstream/common/hash.h"
#include "crmstream/models/mini_batch_kmeans.h"
#include "retail_csv.h"

namespace crmstream::evaluation {
namespace {

namespace fs = std::filesystem;

using internal::DaysFromCivil;
using internal::kColumns;
using internal::kCustomerId;
using internal::kInvoiceDate;
using internal::kInvoiceNo;
using internal::kQuantity;
using internal::kUnitPrice;
using internal::ParseCustomerId;
using internal::ParseDouble;
using internal::ParseInt;
using internal::ParseInvoiceMinutes;
using internal::SplitCsvLine;

struct CustomerAccumulator {
  int64_t last_minutes = std::numeric_limits<int64_t>::min();
  double monetary = 0.0;
  uint64_t last_invoice = 0;  // hash of the previous invoice seen, to skip repeats cheaply
};

// Standardises one column in place with the population standard deviation.
void Standardise(std::vector<double>* features, size_t n, int column, int stride) {
  long double sum = 0.0L;
  for (size_t i = 0; i < n; ++i) sum += (*features)[i * stride + column];
  const long double mean = sum / static_cast<long double>(n);
  long double ss = 0.0L;
  for (size_t i = 0; i < n; ++i) {
    const long double d = (*features)[i * stride + column] - mean;
    ss += d * d;
  }
  const long double sd = std::sqrt(ss / static_cast<long double>(n));
  for (size_t i = 0; i < n; ++i) {
    double& v = (*features)[i * stride + column];
    v = sd > 0.0L ? static_cast<double>((v - mean) / sd) : 0.0;
  }
}

}  // namespace

Result<RfmTable> BuildRfmTable(std::string_view csv) {
  RfmTable table;
  RetailLoadCounts& counts = table.counts;
  // Reference instant of the published recipe: 2011-12-10 12:50.
  const int64_t reference_minutes = DaysFromCivil(2011, 12, 10) * 1440 + 12 * 60 + 50;

  std::unordered_map<int64_t, CustomerAccumulator> customers;
  customers.reserve(8192);
  // (customer, invoice hash) pairs, deduplicated afterwards for the distinct
  // invoice count.
  std::vector<std::pair<int64_t, uint64_t>> invoices;
  invoices.reserve(1 << 16);

  internal::ForEachRetailLine(csv, &counts, [&](const internal::ParsedRetailLine& l) {
    const int64_t customer = l.customer, quantity = l.quantity, minutes = l.minutes;
    const double price = l.unit_price;
    if (quantity < 0) {
      ++counts.negative_quantity;
      return;
    }
    ++counts.kept;
    CustomerAccumulator& acc = customers[customer];
    acc.last_minutes = std::max(acc.last_minutes, minutes);
    acc.monetary += static_cast<double>(quantity) * price;
    const uint64_t invoice = Hash64(l.invoice);
    // Lines of one invoice are adjacent in the file; record each run once.
    if (acc.last_invoice != invoice) {
      acc.last_invoice = invoice;
      invoices.emplace_back(customer, invoice);
    }
  });
  if (customers.empty()) return Status::InvalidArgument("online retail: no usable rows");

  std::sort(invoices.begin(), invoices.end());
  invoices.erase(std::unique(invoices.begin(), invoices.end()), invoices.end());
  std::unordered_map<int64_t, double> distinct;
  distinct.reserve(customers.size());
  for (const auto& [customer, invoice] : invoices) distinct[customer] += 1.0;

  table.customer_ids.reserve(customers.size());
  for (const auto& [id, acc] : customers) table.customer_ids.push_back(id);
  std::sort(table.customer_ids.begin(), table.customer_ids.end());
  const size_t n = table.customer_ids.size();
  table.recency_days.resize(n);
  table.frequency.resize(n);
  table.monetary.resize(n);
  table.last_purchase_minutes.resize(n);
  table.features.resize(n * 3);
  for (size_t i = 0; i < n; ++i) {
    const CustomerAccumulator& acc = customers[table.customer_ids[i]];
    // Whole days, as pandas' Timedelta.days in the published recipe (floor).
    const int64_t minutes = reference_minutes - acc.last_minutes;
    table.recency_days[i] =
        static_cast<double>(minutes >= 0 ? minutes / 1440 : -((-minutes + 1439) / 1440));
    table.frequency[i] = distinct[table.customer_ids[i]];
    table.monetary[i] = acc.monetary;
    table.last_purchase_minutes[i] = acc.last_minutes;
    table.features[i * 3 + 0] = std::log1p(table.recency_days[i]);
    table.features[i * 3 + 1] = std::log1p(table.frequency[i]);
    table.features[i * 3 + 2] = std::log1p(table.monetary[i]);
  }
  for (int c = 0; c < 3; ++c) Standardise(&table.features, n, c, 3);
  return table;
}

Result<RfmTable> LoadRetailRfm(const fs::path& data_dir) {
  const fs::path file = internal::RetailFile(data_dir);
  CRM_ASSIGN_OR_RETURN(const std::string bytes, internal::ReadFileBytes(file));
  auto table = BuildRfmTable(bytes);
  if (!table.ok()) return table.status().WithContext(file.string());
  return table;
}

double KMeansInertia(std::span<const double> points, std::span<const double> centres, int dim) {
  const size_t d = static_cast<size_t>(dim);
  const size_t k = centres.size() / d;
  double total = 0.0;
  for (size_t i = 0; i + d <= points.size(); i += d) {
    double best = std::numeric_limits<double>::infinity();
    for (size_t c = 0; c < k; ++c) {
      double s = 0.0;
      for (size_t j = 0; j < d; ++j) {
        const double t = points[i + j] - centres[c * d + j];
        s += t * t;
      }
      best = std::min(best, s);
    }
    total += best;
  }
  return total;
}

}  // namespace crmstream::evaluation

namespace crmstream::evaluation {
namespace {

uint64_t NextRandom(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

RetailStreamingProtocol DefaultRetailProtocol() {
  RetailStreamingProtocol p;
  p.epochs = 10;
  p.restarts = 5;
  p.seed_buffer_size = 512;
  p.seed_lloyd_iterations = 10;
  p.mini_batch_size = 1;
  p.half_life = 4339.0;  // one epoch of this data set: the centres forget older passes
  p.random_seed = 20111209;
  return p;
}

RetailStreamingProtocol SinglePassRetailProtocol() {
  RetailStreamingProtocol p = DefaultRetailProtocol();
  p.epochs = 1;
  p.half_life = 0.0;  // one pass: every customer counts the same
  p.time_ordered = true;
  return p;
}

Result<RetailClusteringResult> ClusterRetail(const RfmTable& table, int k,
                                             const RetailStreamingProtocol& protocol) {
  const size_t n = table.size();
  if (n == 0) return Status::InvalidArgument("ClusterRetail: empty table");
  if (protocol.epochs < 1 || protocol.restarts < 1) {
    return Status::InvalidArgument("ClusterRetail: epochs and restarts must be >= 1");
  }
  if (protocol.time_ordered && table.last_purchase_minutes.size() != n) {
    return Status::InvalidArgument("ClusterRetail: time order needs last_purchase_minutes");
  }
  RetailClusteringResult best;
  best.k = k;
  double best_score = std::numeric_limits<double>::infinity();
  std::vector<uint32_t> order(n);
  for (int restart = 0; restart < protocol.restarts; ++restart) {
    models::MiniBatchKMeansOptions o;
    o.k = k;
    o.dim = 3;
    o.seed_buffer_size = static_cast<int>(std::min<size_t>(n, protocol.seed_buffer_size));
    o.seed_lloyd_iterations = protocol.seed_lloyd_iterations;
    o.mini_batch_size = protocol.mini_batch_size;
    o.half_life = protocol.half_life;
    o.random_seed = protocol.random_seed * 1000003ULL + static_cast<uint64_t>(restart) * 7919ULL +
                    static_cast<uint64_t>(k);
    CRM_ASSIGN_OR_RETURN(models::MiniBatchKMeans model, models::MiniBatchKMeans::Create(o));
    uint64_t shuffle_state = o.random_seed ^ 0xa5a5a5a5a5a5a5a5ULL;
    std::iota(order.begin(), order.end(), 0u);
    if (protocol.time_ordered) {
      // Rows are in CustomerID order, so a stable sort breaks ties by id.
      std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
        return table.last_purchase_minutes[a] < table.last_purchase_minutes[b];
      });
    }
    double last_epoch_sum = 0.0;
    uint64_t last_epoch_points = 0;
    for (int epoch = 0; epoch < protocol.epochs; ++epoch) {
      for (size_t i = n - 1; i > 0 && !protocol.time_ordered; --i) {  // Fisher-Yates
        const size_t j = NextRandom(&shuffle_state) % (i + 1);
        std::swap(order[i], order[j]);
      }
      const models::KMeansQuality before = model.quality();
      for (uint32_t row : order) {
        auto a = model.Update(std::span<const double>(table.features.data() + size_t{row} * 3, 3));
        if (!a.ok()) return a.status();
      }
      last_epoch_sum = model.quality().sum_squared_distance - before.sum_squared_distance;
      last_epoch_points = model.quality().scored_points - before.scored_points;
    }
    model.Flush();
    const double score = last_epoch_points > 0
                             ? last_epoch_sum / static_cast<double>(last_epoch_points)
                             : std::numeric_limits<double>::infinity();
    if (score < best_score || restart == 0) {
      best_score = score;
      best.chosen_restart = restart;
      best.prequential_mean_sq_distance = score;
      best.centres.assign(model.centroids().begin(), model.centroids().end());
    }
  }
  best.inertia = KMeansInertia(table.features, best.centres, 3);
  if (k >= kRetailMinK && k <= kRetailMaxK) {
    best.published_inertia = kRetailPublishedInertia[k - kRetailMinK];
    best.relative_gap = best.inertia / best.published_inertia - 1.0;
  }
  return best;
}

Result<RetailReport> EvaluateRetail(const std::filesystem::path& data_dir) {
  RetailReport report;
  const auto t0 = std::chrono::steady_clock::now();
  CRM_ASSIGN_OR_RETURN(RfmTable table, LoadRetailRfm(data_dir));
  const auto t1 = std::chrono::steady_clock::now();
  report.counts = table.counts;
  report.customers = static_cast<int64_t>(table.size());
  report.protocol = DefaultRetailProtocol();
  for (int k = kRetailMinK; k <= kRetailMaxK; ++k) {
    CRM_ASSIGN_OR_RETURN(RetailClusteringResult r, ClusterRetail(table, k, report.protocol));
    report.results.push_back(std::move(r));
  }
  report.single_pass_protocol = SinglePassRetailProtocol();
  for (int k = kRetailMinK; k <= kRetailMaxK; ++k) {
    CRM_ASSIGN_OR_RETURN(RetailClusteringResult r,
                         ClusterRetail(table, k, report.single_pass_protocol));
    report.single_pass_results.push_back(std::move(r));
  }
  const auto t2 = std::chrono::steady_clock::now();
  report.load_seconds = std::chrono::duration<double>(t1 - t0).count();
  report.cluster_seconds = std::chrono::duration<double>(t2 - t1).count();
  return report;
}

void PrintRetailReport(const RetailReport& report, std::ostream& out) {
  const RetailStreamingProtocol& p = report.protocol;
  out << "UCI Online Retail, RFM mini-batch k-means\n"
      << "  lines " << report.counts.lines << ", no CustomerID " << report.counts.missing_customer
      << ", Quantity < 0 " << report.counts.negative_quantity << ", malformed "
      << report.counts.malformed << ", kept " << report.counts.kept << "\n"
      << "  customers " << report.customers << " (published: 4339)\n"
      << "  protocol: " << p.epochs << " shuffled epochs, " << p.restarts
      << " restarts chosen by prequential distance, k-means++ on the first " << p.seed_buffer_size
      << " customers + " << p.seed_lloyd_iterations << " Lloyd iterations, mini-batch "
      << p.mini_batch_size << ", half-life " << p.half_life << ", seed " << p.random_seed << "\n";
  const auto flags = out.flags();
  const auto precision = out.precision();
  out << std::fixed;
  out << "   k   inertia  published(full k-means, n_init=10)    gap  prequential"
         "  single pass    gap\n";
  for (size_t i = 0; i < report.results.size(); ++i) {
    const RetailClusteringResult& r = report.results[i];
    out << "  " << std::setw(2) << r.k << "  " << std::setprecision(2) << std::setw(8) << r.inertia
        << "  " << std::setw(8) << r.published_inertia << "                         "
        << std::showpos << std::setw(6) << std::setprecision(2) << 100.0 * r.relative_gap << "%"
        << std::noshowpos << "  " << std::setprecision(4) << std::setw(11)
        << r.prequential_mean_sq_distance;
    if (i < report.single_pass_results.size()) {
      const RetailClusteringResult& s = report.single_pass_results[i];
      out << "  " << std::setprecision(2) << std::setw(11) << s.inertia << "  " << std::showpos
          << std::setw(6) << 100.0 * s.relative_gap << "%" << std::noshowpos;
    }
    out << "\n";
  }
  out << "  single pass: each customer once, in the order of their latest purchase, "
      << report.single_pass_protocol.restarts
      << " restarts side by side chosen by prequential distance, no decay\n";
  out << std::setprecision(3) << "  load " << report.load_seconds << " s, clustering "
      << report.cluster_seconds << " s\n";
  out.flags(flags);
  out.precision(precision);
}

}  // namespace crmstream::evaluation
