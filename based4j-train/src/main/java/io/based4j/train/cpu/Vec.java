package io.based4j.train.cpu;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.VectorSpecies;

/** Dot products and axpys over float64 rows, vectorised, with a summation order fixed by the length alone. */
final class Vec {
    private Vec() {
    }

    /** The widest double vector of this CPU; dot products and axpys over dh carry almost all of the work. */
    static final VectorSpecies<Double> SPECIES = DoubleVector.SPECIES_PREFERRED;

    /**
     * {@code sum x[xOff + i] * y[yOff + i]}: lane-wise fused multiply-adds, then the lanes summed one by one in
     * lane order. (Not {@code reduceLanes(ADD)}, whose order for doubles is unspecified and differs between the
     * interpreted and the compiled code, which would make two identical calls differ in the last bit.) The summation
     * order depends only on {@code n} and the vector width, never on threads.
     */
    static double dot(double[] x, int xOff, double[] y, int yOff, int n) {
        int i = 0;
        double s = 0;
        int lanes = SPECIES.length();
        if (n >= lanes) {
            DoubleVector acc = DoubleVector.zero(SPECIES);
            for (; i <= n - lanes; i += lanes) {
                DoubleVector xv = DoubleVector.fromArray(SPECIES, x, xOff + i);
                acc = xv.fma(DoubleVector.fromArray(SPECIES, y, yOff + i), acc);
            }
            for (int l = 0; l < lanes; l++) {
                s += acc.lane(l);
            }
        }
        for (; i < n; i++) {
            s += x[xOff + i] * y[yOff + i];
        }
        return s;
    }

    /** {@code y[yOff ..] += alpha * x[xOff ..]} for {@code n} elements. */
    static void axpy(double alpha, double[] x, int xOff, double[] y, int yOff, int n) {
        int i = 0;
        int lanes = SPECIES.length();
        DoubleVector a = DoubleVector.broadcast(SPECIES, alpha);
        for (; i <= n - lanes; i += lanes) {
            a.fma(DoubleVector.fromArray(SPECIES, x, xOff + i), DoubleVector.fromArray(SPECIES, y, yOff + i))
                    .intoArray(y, yOff + i);
        }
        for (; i < n; i++) {
            y[yOff + i] += alpha * x[xOff + i];
        }
    }
}
