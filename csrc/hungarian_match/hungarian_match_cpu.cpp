// CPU implementation of hungarian_match: the shortest augmenting path algorithm on each matrix in
// float64, matrices in parallel (coco_eval's share_work, which never waits for a thread the
// scheduler has not started, as an OpenMP team does). CUDA inputs are copied to the host, solved
// there and the indices copied back (the solver is sequential per matrix, and DETR's are small).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "common/work_sharing.h"
#include "hungarian_match/hungarian_match.h"

namespace fastops::hungarian_match {
namespace {

enum class Status : int8_t { Ok = 0, Infeasible = 1, Invalid = 2 };

constexpr double kInf = std::numeric_limits<double>::infinity();

// Working memory of one solve, reused across the images a thread takes.
struct Workspace {
  std::vector<double> cost, u, v, shortest;
  std::vector<int64_t> path, col4row, row4col, remaining;
  std::vector<char> visited_rows, visited_cols;
};

// One augmenting path from the free row `i`: Dijkstra over the reduced costs until a free column
// is reached. Returns that column, or -1 when every reachable column costs +inf (infeasible).
int64_t augmenting_path(int64_t nc, const double* cost, Workspace& w, int64_t i, double& min_val) {
  double min_so_far = 0;
  int64_t num_remaining = nc;
  // Columns are scanned in decreasing index order, as scipy does, so ties resolve alike.
  for (int64_t it = 0; it < nc; ++it) w.remaining[it] = nc - it - 1;
  std::fill(w.visited_rows.begin(), w.visited_rows.end(), 0);
  std::fill(w.visited_cols.begin(), w.visited_cols.end(), 0);
  std::fill(w.shortest.begin(), w.shortest.end(), kInf);
  int64_t sink = -1;
  while (sink == -1) {
    int64_t index = -1;
    double lowest = kInf;
    w.visited_rows[i] = 1;
    const double* row = cost + i * nc;
    const double ui = w.u[i];
    // raw pointers: the stores to path and shortest cannot alias the loads the compiler keeps
    const int64_t* __restrict remaining = w.remaining.data();
    const double* __restrict v = w.v.data();
    const int64_t* __restrict row4col = w.row4col.data();
    double* __restrict shortest = w.shortest.data();
    int64_t* __restrict path = w.path.data();
    for (int64_t it = 0; it < num_remaining; ++it) {
      const int64_t j = remaining[it];
      const double r = min_so_far + row[j] - ui - v[j];  // scipy's order of operations
      double s = shortest[j];
      if (r < s) {
        path[j] = i;
        s = r;
        shortest[j] = r;
      }
      // Among equal distances a free column wins: the path ends sooner.
      if (s < lowest || (s == lowest && row4col[j] == -1)) {
        lowest = s;
        index = it;
      }
    }
    min_so_far = lowest;
    if (min_so_far == kInf) return -1;
    const int64_t j = w.remaining[index];
    if (w.row4col[j] == -1) {
      sink = j;
    } else {
      i = w.row4col[j];
    }
    w.visited_cols[j] = 1;
    w.remaining[index] = w.remaining[--num_remaining];
  }
  min_val = min_so_far;
  return sink;
}

// Assigns every row of the nr x nc matrix `cost` (nr <= nc, row-major) to a distinct column.
Status solve_wide(int64_t nr, int64_t nc, const double* cost, Workspace& w) {
  w.u.assign(nr, 0);
  w.v.assign(nc, 0);
  w.shortest.assign(nc, kInf);
  w.path.assign(nc, -1);
  w.col4row.assign(nr, -1);
  w.row4col.assign(nc, -1);
  w.remaining.assign(nc, 0);
  w.visited_rows.assign(nr, 0);
  w.visited_cols.assign(nc, 0);
  // Greedy start: each row takes its cheapest column (the lowest such index) when that column is
  // still free. u_i = the row's minimum and v = 0 keep every reduced cost c_ij - u_i - v_j >= 0,
  // those of the assigned pairs 0 and the free columns' v 0, the state the augmenting paths need;
  // only the rows left over then search for a path, usually a fraction of them.
  for (int64_t i = 0; i < nr; ++i) {
    const double* row = cost + i * nc;
    double best = kInf;
    int64_t best_free = -1;
    for (int64_t j = 0; j < nc; ++j) {
      const double x = row[j];
      if (x < best) {
        best = x;
        best_free = w.row4col[j] == -1 ? j : -1;
      } else if (x == best && best_free == -1 && w.row4col[j] == -1) {
        best_free = j;
      }
    }
    if (best == kInf) continue;  // every pair forbidden: the augmenting path reports it
    w.u[i] = best;
    if (best_free >= 0) {
      w.col4row[i] = best_free;
      w.row4col[best_free] = i;
    }
  }
  for (int64_t cur_row = 0; cur_row < nr; ++cur_row) {
    if (w.col4row[cur_row] != -1) continue;
    double min_val = 0;
    const int64_t sink = augmenting_path(nc, cost, w, cur_row, min_val);
    if (sink < 0) return Status::Infeasible;
    // dual update
    w.u[cur_row] += min_val;
    for (int64_t i = 0; i < nr; ++i) {
      if (w.visited_rows[i] && i != cur_row) w.u[i] += min_val - w.shortest[w.col4row[i]];
    }
    for (int64_t j = 0; j < nc; ++j) {
      if (w.visited_cols[j]) w.v[j] -= min_val - w.shortest[j];
    }
    // augment along the path back to cur_row
    int64_t j = sink;
    for (;;) {
      const int64_t i = w.path[j];
      w.row4col[j] = i;
      std::swap(w.col4row[i], j);
      if (i == cur_row) break;
    }
  }
  return Status::Ok;
}

// One matrix (strides s0, s1) copied to float64, transposed when it has more rows than columns,
// negated to maximize; then solved and its pairs written in increasing row order.
template <typename T>
Status solve_matrix(const T* src, int64_t nr, int64_t nc, int64_t s0, int64_t s1, bool maximize, Workspace& w,
                    int64_t* rows, int64_t* cols) {
  if (nr == 0 || nc == 0) return Status::Ok;
  const bool transpose = nc < nr;
  const int64_t wr = transpose ? nc : nr, wc = transpose ? nr : nc;
  w.cost.resize(wr * wc);
  bool valid = true;
  for (int64_t i = 0; i < nr; ++i) {
    for (int64_t j = 0; j < nc; ++j) {
      double x = static_cast<double>(src[i * s0 + j * s1]);
      if (maximize) x = -x;
      valid &= !(std::isnan(x) || x == -kInf);
      w.cost[transpose ? j * wc + i : i * wc + j] = x;
    }
  }
  if (!valid) return Status::Invalid;
  const Status status = solve_wide(wr, wc, w.cost.data(), w);
  if (status != Status::Ok) return status;
  if (!transpose) {
    for (int64_t i = 0; i < nr; ++i) {
      rows[i] = i;
      cols[i] = w.col4row[i];
    }
  } else {
    // the transposed problem's rows are the columns; its assigned columns are the rows, sorted
    std::vector<int64_t> order(wr);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return w.col4row[a] < w.col4row[b]; });
    for (int64_t k = 0; k < wr; ++k) {
      rows[k] = w.col4row[order[k]];
      cols[k] = order[k];
    }
  }
  return Status::Ok;
}

template <typename T>
Status solve_one(const at::Tensor& c, bool maximize, Workspace& w, at::Tensor& rows, at::Tensor& cols) {
  return solve_matrix(c.const_data_ptr<T>(), c.size(0), c.size(1), c.stride(0), c.stride(1), maximize, w,
                      rows.mutable_data_ptr<int64_t>(), cols.mutable_data_ptr<int64_t>());
}

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> hungarian_match_cpu(at::TensorList costs, bool maximize) {
  check_costs(costs);
  const int64_t batch = static_cast<int64_t>(costs.size());
  std::vector<at::Tensor> rows(batch), cols(batch);
  double total_work = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const at::Tensor& c = costs[b];
    const int64_t k = std::min(c.size(0), c.size(1));
    rows[b] = at::empty({k}, c.options().dtype(at::kLong));
    cols[b] = at::empty({k}, c.options().dtype(at::kLong));
    total_work += static_cast<double>(c.size(0)) * c.size(1) * k;  // about n^3 steps for n x n
  }
  std::vector<Status> status(batch, Status::Ok);
  // chunks of about 1e6 steps (a 100 x 100 matrix is about 1e6, some 50 us): smaller ones are not
  // worth a helper thread's wake-up
  const double mean_work = batch > 0 ? total_work / batch : 0;
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(1e6 / std::max(mean_work, 1.0)));
  coco_eval::share_work(batch, grain, [&](int64_t begin, int64_t end) {
    Workspace w;
    for (int64_t b = begin; b < end; ++b) {
      const at::Tensor& c = costs[b];
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scalar_type(), "hungarian_match",
                                      [&] { status[b] = solve_one<scalar_t>(c, maximize, w, rows[b], cols[b]); });
    }
  });
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK_VALUE(status[b] != Status::Invalid, "hungarian_match: costs[", b, "] contains NaN or ",
                      maximize ? "+inf (with maximize; -inf marks a forbidden pair)"
                               : "-inf (invalid numeric entries; +inf marks a forbidden pair)");
    TORCH_CHECK_VALUE(status[b] != Status::Infeasible, "hungarian_match: cost matrix costs[", b,
                      "] is infeasible: no assignment of min(rows, columns) pairs avoids its forbidden (",
                      maximize ? "-inf" : "+inf", ") entries");
  }
  return {rows, cols};
}

// CUDA (or other device) inputs: solved on the host, indices returned on the inputs' device, where
// DETR's loss indexes its predictions and targets with them.
std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> hungarian_match_host(at::TensorList costs, bool maximize) {
  check_costs(costs);
  std::vector<at::Tensor> host;
  host.reserve(costs.size());
  for (const at::Tensor& c : costs) host.push_back(c.cpu());
  auto [rows, cols] = hungarian_match_cpu(host, maximize);
  for (size_t b = 0; b < rows.size(); ++b) {
    rows[b] = rows[b].to(costs[b].device());
    cols[b] = cols[b].to(costs[b].device());
  }
  return {rows, cols};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) { m.impl("hungarian_match", &hungarian_match_cpu); }

TORCH_LIBRARY_IMPL(fastops, CUDA, m) { m.impl("hungarian_match", &hungarian_match_host); }

}  // namespace fastops::hungarian_match
