// Lloyd–Max (minimum mean squared error) scalar quantizer for a symmetric coordinate density,
// solved in double precision. LloydMaxCodebook::Get caches the float version of this.
//
// With 2^b levels and symmetry, the threshold at 0 is fixed and only the m = 2^(b-1) positive
// levels c_1 < ... < c_m and thresholds 0 = t_0 < t_1 < ... < t_{m-1} < t_m = upper are unknown.
// The optimality conditions are
//   c_i = E[T | t_{i-1} < T < t_i] = FirstMoment(t_{i-1}, t_i) / Mass(t_{i-1}, t_i)   (centroid)
//   t_i = (c_i + c_{i+1}) / 2                                                      (nearest level)
// Lloyd's iteration alternates the two and converges only linearly (very slowly at b = 8), so
// after a short Lloyd warm-up the solver runs Newton's method on g_i(t) = t_i - (c_i + c_{i+1})/2,
// whose Jacobian is tridiagonal (c_i depends on t_{i-1} and t_i only, with
// ∂c_i/∂t_i = f(t_i)(t_i - c_i)/P_i and ∂c_i/∂t_{i-1} = f(t_{i-1})(c_i - t_{i-1})/P_i).
// It stops when max |g_i| < 1e-14 (well inside the required 1e-10).
#pragma once

#include <vector>

#include "tqlm/codec.h"

namespace tqlm::codec {

class CoordinateDensity;

struct LloydMaxSolution {
  std::vector<double> levels;      // 2^bits, ascending
  std::vector<double> thresholds;  // 2^bits - 1, ascending
  double distortion = 0;           // E[(T - Q(T))^2]
  double residual = 0;             // max |t_i - (c_i + c_{i+1}) / 2| at exit
  int iterations = 0;              // Lloyd + Newton steps taken
};

LloydMaxSolution SolveLloydMax(const CoordinateDensity& density, int bits);

}  // namespace tqlm::codec
