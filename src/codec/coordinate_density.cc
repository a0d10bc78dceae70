#include "codec/coordinate_density.h"

#include <cmath>
#include <limits>
#include <numbers>

namespace tqlm::codec {
namespace {

constexpr int kPanels = 4096;

// 16-point Gauss–Legendre nodes and weights on [-1, 1] (positive half; symmetric).
constexpr double kNodes[8] = {
    0.0950125098376374401853193, 0.2816035507792589132304605, 0.4580167776572273863424194,
    0.6178762444026437484466718, 0.7554044083550030338951012, 0.8656312023878317438804679,
    0.9445750230732325760779884, 0.9894009349916499325961542};
constexpr double kWeights[8] = {
    0.1894506104550684962853967, 0.1826034150449235888667637, 0.1691565193950025381893121,
    0.1495959888165767320815017, 0.1246289712555338720524763, 0.0951585116824927848099251,
    0.0622535239386478928628438, 0.0271524594117540948517806};

}  // namespace

CoordinateDensity::CoordinateDensity(int dim, CodebookKind kind) : dim_(dim), kind_(kind) {
  sigma_ = 1.0 / std::sqrt(double(dim));
  if (kind_ == CodebookKind::kGaussian) return;
  exponent_ = (dim - 3) / 2.0;
  log_norm_ = std::lgamma(dim / 2.0) - 0.5 * std::log(std::numbers::pi) -
              std::lgamma((dim - 1) / 2.0);
  suffix_.assign(kPanels + 1, 0.0);
  for (int j = kPanels - 1; j >= 0; --j) {
    suffix_[j] = suffix_[j + 1] + PanelIntegral(double(j) / kPanels, double(j + 1) / kPanels);
  }
  // lgamma of large arguments carries ~1e-16 relative error of a value in the thousands, i.e.
  // ~1e-13 in C_d at d = 1024: renormalize so that the half-line mass is exactly 1/2.
  const double correction = 0.5 / suffix_[0];
  log_norm_ += std::log(correction);
  for (double& s : suffix_) s *= correction;
}

double CoordinateDensity::upper() const {
  return kind_ == CodebookKind::kSphere ? 1.0 : std::numeric_limits<double>::infinity();
}

double CoordinateDensity::LogPdf(double t) const {
  if (kind_ == CodebookKind::kGaussian) {
    const double z = t / sigma_;
    return -0.5 * z * z - std::log(sigma_ * std::sqrt(2 * std::numbers::pi));
  }
  if (std::abs(t) >= 1) return -std::numeric_limits<double>::infinity();
  return log_norm_ + exponent_ * std::log1p(-t * t);
}

double CoordinateDensity::Pdf(double t) const { return std::exp(LogPdf(t)); }

double CoordinateDensity::PanelIntegral(double a, double b) const {
  const double half = 0.5 * (b - a), mid = 0.5 * (a + b);
  double sum = 0;
  for (int i = 0; i < 8; ++i) {
    sum += kWeights[i] * (Pdf(mid - half * kNodes[i]) + Pdf(mid + half * kNodes[i]));
  }
  return sum * half;
}

double CoordinateDensity::Tail(double t) const {
  if (kind_ == CodebookKind::kGaussian) {
    if (std::isinf(t)) return 0;
    return 0.5 * std::erfc(t / (sigma_ * std::numbers::sqrt2));
  }
  if (t >= 1) return 0;
  const double x = t * kPanels;
  const int j = int(x);
  return suffix_[j + 1] + PanelIntegral(t, double(j + 1) / kPanels);
}

double CoordinateDensity::FirstMoment(double a, double b) const {
  if (kind_ == CodebookKind::kGaussian) {
    // σ² (f(a) - f(b)) = σ² f(a) (1 - exp(-(b² - a²) / (2σ²))), written to avoid cancellation.
    if (std::isinf(b)) return sigma_ * sigma_ * Pdf(a);
    const double s2 = sigma_ * sigma_;
    return s2 * Pdf(a) * -std::expm1(-(b - a) * (b + a) / (2 * s2));
  }
  // C / (2(k+1)) [(1-a²)^(k+1) - (1-b²)^(k+1)], again as one exp times an expm1.
  const double k1 = exponent_ + 1;
  const double la = std::log1p(-a * a);
  const double scale = std::exp(log_norm_ + k1 * la) / (2 * k1);
  if (b >= 1) return scale;
  const double lb = std::log1p(-b * b);
  return scale * -std::expm1(k1 * (lb - la));
}

}  // namespace tqlm::codec
