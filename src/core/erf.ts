// erf(x) in float64, for the exact (erf) GELU of docs/method.md section 1. JavaScript has no Math.erf.
//
// W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 1969
// (netlib specfun CALERF): three rational approximations, each accurate to better than 1e-16
// relative on its interval. exp(-y^2) is split as exp(-ysq^2) * exp(-del) with ysq = y rounded
// down to 1/16, which keeps the product accurate where y^2 has rounding error.

const A = [3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947, 0.185777706184603153];
const B = [23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062];
const C = [
  0.564188496988670089, 8.88314979438837594, 66.1191906371416295, 298.635138197400131, 881.95222124176909,
  1712.04761263407058, 2051.07837782607147, 1230.33935479799725, 2.15311535474403846e-8,
];
const D = [
  15.7449261107098347, 117.693950891312499, 537.181101862009858, 1621.38957456669019, 3290.79923573345963,
  4362.61909014324716, 3439.36767414372164, 1230.33935480374942,
];
const P = [
  0.305326634961232344, 0.360344899949804439, 0.125781726111229246, 0.0160837851487422766,
  6.58749161529837803e-4, 0.0163153871373020978,
];
const Q = [2.56852019228982242, 1.87295284992346047, 0.527905102951428412, 0.0605183413124413191, 0.00233520497626869185];
const SQRPI = 0.56418958354775628695; // 1/sqrt(pi)

/** exp(-y^2) computed as Cody does, to keep its relative accuracy for larger y. */
function expNegSq(y: number): number {
  const ysq = Math.trunc(y * 16) / 16;
  const del = (y - ysq) * (y + ysq);
  return Math.exp(-ysq * ysq) * Math.exp(-del);
}

/**
 * The error function erf(x), to float64 precision (the GELU of timm and ONNX is x/2 (1 + erf(x /
 * sqrt 2))).
 */
export function erf(x: number): number {
  const y = Math.abs(x);
  if (y <= 0.46875) {
    const ysq = y > 1.11e-16 ? y * y : 0;
    let num = A[4] * ysq;
    let den = ysq;
    for (let i = 0; i < 3; i++) {
      num = (num + A[i]) * ysq;
      den = (den + B[i]) * ysq;
    }
    return (x * (num + A[3])) / (den + B[3]);
  }
  let erfc: number;
  if (y <= 4) {
    let num = C[8] * y;
    let den = y;
    for (let i = 0; i < 7; i++) {
      num = (num + C[i]) * y;
      den = (den + D[i]) * y;
    }
    erfc = expNegSq(y) * ((num + C[7]) / (den + D[7]));
  } else if (y >= 26.543) {
    erfc = 0; // below the smallest double
  } else {
    const ysq = 1 / (y * y);
    let num = P[5] * ysq;
    let den = ysq;
    for (let i = 0; i < 4; i++) {
      num = (num + P[i]) * ysq;
      den = (den + Q[i]) * ysq;
    }
    const r = (ysq * (num + P[4])) / (den + Q[4]);
    erfc = expNegSq(y) * ((SQRPI - r) / y);
  }
  const e = 0.5 - erfc + 0.5;
  return x < 0 ? -e : e;
}

/** Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x * Math.SQRT1_2));
}
