// TensorFlow's tf.image.resize(method="bilinear", antialias=True) in JavaScript, so that the
// page feeds the model the pixels that training and the Python helpers feed it
// (helpers/dataset.make_dataset). TF runs the ScaleAndTranslate kernel with a "triangle"
// filter widened by the downscaling factor: rows first, then columns, in float32 arithmetic,
// which Math.fround reproduces step by step.
const f = Math.fround;

// For each output position: the first input index and the normalized weights (TF's
// ComputeSpansCore with scale = output/input, no translation, radius 1).
function spans(outputSize, inputSize) {
  const scale = f(f(outputSize) / f(inputSize));
  const invScale = f(1 / scale);
  const kernelScale = Math.max(invScale, 1);
  const oneOverKernelScale = f(1 / kernelScale);
  const radius = kernelScale; // radius 1 times the kernel scale
  const starts = new Int32Array(outputSize);
  const weights = [];
  for (let x = 0; x < outputSize; x++) {
    const sample = f(f(x + 0.5) * invScale);
    if (sample < 0 || sample > inputSize) {
      weights.push(new Float32Array(0));
      continue;
    }
    let start = Math.ceil(f(f(sample - radius) - 0.5));
    let end = Math.floor(f(f(sample + radius) - 0.5));
    start = Math.min(Math.max(start, 0), inputSize - 1);
    end = Math.min(Math.max(end, 0), inputSize - 1) + 1;
    const w = new Float32Array(end - start);
    let total = 0;
    for (let source = start; source < end; source++) {
      const position = Math.abs(f(f(f(source + 0.5) - sample) * oneOverKernelScale));
      const weight = position < 1 ? f(1 - f(position)) : 0;
      w[source - start] = weight;
      total = f(total + weight);
    }
    if (Math.abs(total) >= 1000 * 1.1754943508222875e-38) {
      const inverse = f(1 / total);
      for (let i = 0; i < w.length; i++) w[i] = f(w[i] * inverse);
    }
    starts[x] = start;
    weights.push(w);
  }
  return { starts, weights };
}

/**
 * Resize RGBA bytes (width x height, as from a canvas) to RGB float32 in 0-255 of
 * outWidth x outHeight, as tf.image.resize(..., "bilinear", antialias=True) then clipping.
 * @returns {Float32Array} outHeight * outWidth * 3 values, row-major, channels last.
 */
export function resizeBilinearAntialias(rgba, width, height, outWidth, outHeight) {
  const rows = spans(outHeight, height);
  const cols = spans(outWidth, width);
  const middle = new Float32Array(outHeight * width * 3); // rows resized, full width
  for (let y = 0; y < outHeight; y++) {
    const w = rows.weights[y];
    const out = y * width * 3;
    for (let i = 0; i < w.length; i++) {
      const row = (rows.starts[y] + i) * width * 4;
      for (let x = 0; x < width; x++) {
        for (let c = 0; c < 3; c++) {
          const k = out + x * 3 + c;
          middle[k] = f(middle[k] + f(w[i] * rgba[row + x * 4 + c]));
        }
      }
    }
  }
  const result = new Float32Array(outHeight * outWidth * 3);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      const w = cols.weights[x];
      const out = (y * outWidth + x) * 3;
      for (let i = 0; i < w.length; i++) {
        const k = (y * width + cols.starts[x] + i) * 3;
        for (let c = 0; c < 3; c++) result[out + c] = f(result[out + c] + f(w[i] * middle[k + c]));
      }
    }
  }
  for (let i = 0; i < result.length; i++) result[i] = Math.min(Math.max(result[i], 0), 255);
  return result;
}
