// The distribution of one coordinate t of a uniformly random point on the unit sphere in R^d,
// density f(t) = C_d (1 - t^2)^((d-3)/2) on [-1, 1] with C_d = Γ(d/2) / (√π Γ((d-1)/2)),
// or its Gaussian limit N(0, 1/d). Both are symmetric, so everything is asked for t >= 0.
//
// What the Lloyd–Max solver needs, with full relative accuracy even far in the tail:
//   Pdf(t), Tail(t) = P(T > t), Mass(a, b) = P(a < T < b), FirstMoment(a, b) = ∫_a^b t f(t) dt.
// The first moment has a closed form for both (d/dt (1-t^2)^(k+1) = -2(k+1) t (1-t^2)^k);
// the sphere's tail is integrated numerically once per dim: 16-point Gauss–Legendre on 4096
// equal panels of [0, 1], summed from t = 1 inwards so that small tails keep their digits.
#pragma once

#include <vector>

#include "tqlm/codec.h"

namespace tqlm::codec {

class CoordinateDensity {
 public:
  CoordinateDensity(int dim, CodebookKind kind);

  int dim() const { return dim_; }
  CodebookKind kind() const { return kind_; }
  // Right end of the support: 1 for the sphere, +infinity for the Gaussian.
  double upper() const;
  double Pdf(double t) const;
  double Tail(double t) const;  // t >= 0
  double Mass(double a, double b) const { return Tail(a) - Tail(b); }  // 0 <= a <= b
  double FirstMoment(double a, double b) const;                      // 0 <= a <= b
  double SecondMomentTotal() const { return 1.0 / dim_; }           // E[t^2] = 1/d for both

 private:
  double LogPdf(double t) const;
  double PanelIntegral(double a, double b) const;  // Gauss–Legendre ∫_a^b f, sphere only

  int dim_;
  CodebookKind kind_;
  double exponent_ = 0;  // (d - 3) / 2
  double log_norm_ = 0;  // log C_d
  double sigma_ = 0;     // 1 / √d
  std::vector<double> suffix_;  // suffix_[j] = ∫_{j/N}^1 f, sphere only
};

}  // namespace tqlm::codec
