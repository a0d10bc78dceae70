#include "codec/lloyd_max_solver.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "codec/coordinate_density.h"
#include "tqlm/error.h"

namespace tqlm::codec {
namespace {

constexpr double kTolerance = 1e-14;
constexpr int kLloydWarmup = 30;
constexpr int kMaxNewton = 200;

// Φ^{-1}(p) for the standard normal by bisection on erfc (only used for the starting point).
double NormalQuantile(double p) {
  double lo = -40, hi = 40;
  for (int i = 0; i < 200 && hi - lo > 1e-15; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// The positive half: thresholds t[0..m] with t[0] = 0 and t[m] = upper; centroids c[1..m].
struct HalfProblem {
  const CoordinateDensity& f;
  int m;
  std::vector<double> mass, centroid;  // index 1..m

  HalfProblem(const CoordinateDensity& density, int levels)
      : f(density), m(levels), mass(levels + 1), centroid(levels + 1) {}

  void Centroids(const std::vector<double>& t) {
    for (int i = 1; i <= m; ++i) {
      mass[i] = f.Mass(t[i - 1], t[i]);
      centroid[i] = f.FirstMoment(t[i - 1], t[i]) / mass[i];
    }
  }
  // max |t_i - (c_i + c_{i+1}) / 2| with centroids computed for t.
  double Residual(const std::vector<double>& t) {
    Centroids(t);
    double r = 0;
    for (int i = 1; i < m; ++i) r = std::max(r, std::abs(t[i] - 0.5 * (centroid[i] + centroid[i + 1])));
    return r;
  }
  bool Valid(const std::vector<double>& t) const {
    for (int i = 1; i <= m; ++i) {
      if (!(t[i] > t[i - 1])) return false;
    }
    return true;
  }
};

}  // namespace

LloydMaxSolution SolveLloydMax(const CoordinateDensity& density, int bits) {
  if (bits < 1 || bits > 16) throw Error("Lloyd–Max: bits must be 1..16");
  const int m = 1 << (bits - 1);
  HalfProblem p(density, m);
  const double sigma = 1.0 / std::sqrt(double(density.dim()));
  const double upper = density.upper();

  // Start from the high-resolution compander: thresholds at quantiles of f^(1/3), which for a
  // N(0, σ²)-like density is N(0, 3σ²).
  std::vector<double> t(m + 1);
  t[0] = 0;
  t[m] = upper;
  for (int i = 1; i < m; ++i) {
    t[i] = std::sqrt(3.0) * sigma * NormalQuantile(0.5 + 0.5 * double(i) / m);
    if (upper < 2) t[i] = std::min(t[i], upper * (1 - double(m - i) / (4.0 * m)));
  }
  int iterations = 0;
  for (int it = 0; it < kLloydWarmup && m > 1; ++it, ++iterations) {
    p.Centroids(t);
    for (int i = 1; i < m; ++i) t[i] = 0.5 * (p.centroid[i] + p.centroid[i + 1]);
  }

  double residual = m > 1 ? p.Residual(t) : 0;
  std::vector<double> diag(m + 1), lower(m + 1), upper_diag(m + 1), rhs(m + 1), trial(m + 1);
  for (int it = 0; it < kMaxNewton && residual > kTolerance; ++it, ++iterations) {
    // p.centroid / p.mass are current for t (Residual computed them).
    for (int i = 1; i < m; ++i) {
      const double fi = density.Pdf(t[i]);
      const double dci_up = fi * (t[i] - p.centroid[i]) / p.mass[i];
      const double dcn_lo = fi * (p.centroid[i + 1] - t[i]) / p.mass[i + 1];
      diag[i] = 1 - 0.5 * (dci_up + dcn_lo);
      lower[i] = i > 1 ? -0.5 * density.Pdf(t[i - 1]) * (p.centroid[i] - t[i - 1]) / p.mass[i] : 0;
      upper_diag[i] =
          i + 1 < m ? -0.5 * density.Pdf(t[i + 1]) * (t[i + 1] - p.centroid[i + 1]) / p.mass[i + 1]
                    : 0;
      rhs[i] = -(t[i] - 0.5 * (p.centroid[i] + p.centroid[i + 1]));
    }
    // Thomas algorithm for the tridiagonal system J Δ = -g.
    for (int i = 2; i < m; ++i) {
      const double w = lower[i] / diag[i - 1];
      diag[i] -= w * upper_diag[i - 1];
      rhs[i] -= w * rhs[i - 1];
    }
    std::vector<double> step(m + 1, 0.0);
    for (int i = m - 1; i >= 1; --i) {
      step[i] = (rhs[i] - (i + 1 < m ? upper_diag[i] * step[i + 1] : 0)) / diag[i];
    }
    // Damped: halve the step until the thresholds stay ordered and the residual drops.
    double alpha = 1;
    bool accepted = false;
    for (int k = 0; k < 40; ++k, alpha *= 0.5) {
      trial = t;
      for (int i = 1; i < m; ++i) trial[i] = t[i] + alpha * step[i];
      if (!p.Valid(trial)) continue;
      const double r = p.Residual(trial);
      if (r < residual || r <= kTolerance) {
        t = trial;
        residual = r;
        accepted = true;
        break;
      }
    }
    if (!accepted) {  // Newton stalled (at rounding level): one Lloyd step instead
      p.Centroids(t);
      for (int i = 1; i < m; ++i) t[i] = 0.5 * (p.centroid[i] + p.centroid[i + 1]);
      const double r = p.Residual(t);
      if (!(r < residual)) break;
      residual = r;
    }
  }
  p.Centroids(t);
  if (m > 1 && !(residual <= 1e-10)) {
    throw Error("Lloyd–Max solver did not converge (d=" + std::to_string(density.dim()) +
                ", b=" + std::to_string(bits) + ", residual " + std::to_string(residual) + ")");
  }

  LloydMaxSolution s;
  s.residual = residual;
  s.iterations = iterations;
  s.levels.resize(2 * m);
  s.thresholds.resize(2 * m - 1);
  double captured = 0;  // Σ P_i c_i² over the positive half
  for (int i = 1; i <= m; ++i) {
    s.levels[m - 1 + i] = p.centroid[i];
    s.levels[m - i] = -p.centroid[i];
    captured += p.mass[i] * p.centroid[i] * p.centroid[i];
  }
  s.thresholds[m - 1] = 0;
  for (int i = 1; i < m; ++i) {
    s.thresholds[m - 1 + i] = t[i];
    s.thresholds[m - 1 - i] = -t[i];
  }
  // E[(T - c(T))²] = E[T²] - Σ P_i c_i² at the centroid condition.
  s.distortion = density.SecondMomentTotal() - 2 * captured;
  return s;
}

}  // namespace tqlm::codec
