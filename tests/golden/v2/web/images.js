// Images into an image-classification bundle (a ViT), as runtime/images.py: uint8 (0-255) or float
// (0-1) pixels, HWC or CHW as the caller states (or browser ImageData / a canvas), each checked and
// refused in one line; resized (bilinear, half-pixel centres) only when asked; then
// pixel_values = (pixels - 0.5) / 0.5.

import { EdgeformerError, InputError, pyG, repr } from './errors.js';
import { product, pyTuple, tensor } from './inputs.js';
import { softmax } from './sampling.js';
import { labelled, rowsOf } from './text.js';

export const PIXEL_MEAN = 0.5, PIXEL_STD = 0.5;
export const LAYOUTS = ['HWC', 'CHW'];

// (side, channels) of the images a bundle reads; refuses a bundle that reads no images.
export function imageGeometry(manifest, location) {
  const cfg = manifest.model.config;
  if (!cfg.image_size || manifest.model.task !== 'classification') {
    throw new EdgeformerError(`bundle ${location} is not an image classifier (its task: ${manifest.model.task})`);
  }
  return [cfg.image_size, cfg.num_channels];
}

// ImageData / a canvas (browser) -> {dims [H, W, 4 or channels], data Uint8ClampedArray}, as HWC.
function fromBrowserImage(image, channels) {
  const isCanvas = typeof image.getContext === 'function';
  const pixels = isCanvas ? image.getContext('2d').getImageData(0, 0, image.width, image.height) : image;
  const H = pixels.height, W = pixels.width, rgba = pixels.data;
  const data = new Uint8Array(H * W * channels);
  for (let i = 0; i < H * W; i++) {
    if (channels === 1) { // ITU-R 601 luma, as runtime/images.py match_channels
      data[i] = Math.round(rgba[4 * i] * 0.299 + rgba[4 * i + 1] * 0.587 + rgba[4 * i + 2] * 0.114);
    } else for (let c = 0; c < channels; c++) data[i * channels + c] = rgba[4 * i + c];
  }
  return { dims: [H, W, channels], data, layout: 'HWC' };
}

const isBrowserImage = (im) => im && typeof im === 'object' && ((typeof im.width === 'number' && typeof im.height === 'number'
  && im.data instanceof Uint8ClampedArray && !im.dims) || typeof im.getContext === 'function');

// One image -> float32 (C, H, W) in [0, 1] with its rank, channels, dtype and values checked.
export function toCHW(image, i, layout, channels) {
  let { dims, data } = image;
  if (dims.length === 2 && channels === 1) dims = layout === 'CHW' ? [1, ...dims] : [...dims, 1];
  if (dims.length !== 3) throw new InputError(`image ${i} has shape ${pyTuple(dims)}; expected ${layout} with ${channels} channel(s)`);
  const c = layout === 'CHW' ? dims[0] : dims[2];
  if (c !== channels) {
    const other = layout === 'CHW' ? dims[2] : dims[0], flip = layout === 'CHW' ? 'HWC' : 'CHW';
    const hint = other === channels ? ` (it looks ${flip}: pass layout='${flip}')` : '';
    throw new InputError(`image ${i} has ${c} channels in ${layout} layout (shape ${pyTuple(dims)}); `
      + `this model reads ${channels}-channel images${hint}`);
  }
  let pixels;
  if (data instanceof Uint8Array || data instanceof Uint8ClampedArray) pixels = Float32Array.from(data, (v) => v / 255);
  else if (data instanceof Float32Array || data instanceof Float64Array) {
    pixels = Float32Array.from(data);
    if (pixels.some((v) => !Number.isFinite(v))) throw new InputError(`image ${i} has NaN or infinite values; expected pixels in [0, 1]`);
    let lo = Infinity, hi = -Infinity;
    for (const v of pixels) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (pixels.length && (lo < 0 || hi > 1)) {
      throw new InputError(`image ${i} has float values from ${pyG(lo, 3)} to ${pyG(hi, 3)}; `
        + 'expected float pixels in [0, 1] (or uint8 0-255)');
    }
  } else {
    const name = data?.constructor?.name ?? typeof data;
    throw new InputError(`image ${i} has dtype ${name}; expected uint8 (0-255) or float (0.0-1.0)`);
  }
  if (layout === 'CHW') return { dims, data: pixels };
  const [H, W, C] = dims, out = new Float32Array(pixels.length);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let ch = 0; ch < C; ch++) {
    out[(ch * H + y) * W + x] = pixels[(y * W + x) * C + ch];
  }
  return { dims: [C, H, W], data: out };
}

// (C, H, W) -> (C, size, size), bilinear with half-pixel centres (PIL's and torchvision's
// convention), float32 arithmetic as runtime/images.py resize_bilinear.
export function resizeBilinear(image, size) {
  const [C, H, W] = image.dims, f = Math.fround;
  const coords = (n) => Array.from({ length: size }, (_, j) => {
    const x = Math.min(Math.max((j + 0.5) * n / size - 0.5, 0), n - 1);
    const lo = Math.floor(x);
    return [lo, Math.min(lo + 1, n - 1), f(x - lo)];
  });
  const ys = coords(H), xs = coords(W);
  const rows = new Float32Array(C * size * W);
  for (let c = 0; c < C; c++) for (let j = 0; j < size; j++) {
    const [y0, y1, wy] = ys[j];
    for (let x = 0; x < W; x++) {
      rows[(c * size + j) * W + x] = f(f(image.data[(c * H + y0) * W + x] * f(1 - wy)) + f(image.data[(c * H + y1) * W + x] * wy));
    }
  }
  const out = new Float32Array(C * size * size);
  for (let c = 0; c < C; c++) for (let j = 0; j < size; j++) for (let k = 0; k < size; k++) {
    const [x0, x1, wx] = xs[k], r = (c * size + j) * W;
    out[(c * size + j) * size + k] = f(f(rows[r + x0] * f(1 - wx)) + f(rows[r + x1] * wx));
  }
  return { dims: [C, size, size], data: out };
}

// Images as given -> a list of {dims, data}: one image {dims, data}, a stacked batch (4-D), an
// array of images, or browser ImageData / canvases.
function imageList(images, channels) {
  const one = (im) => (isBrowserImage(im) ? fromBrowserImage(im, channels) : im);
  if (images && !Array.isArray(images) && (isBrowserImage(images) || images.dims)) {
    const im = one(images);
    if (im.dims?.length === 4) {
      const per = product(im.dims.slice(1));
      return Array.from({ length: im.dims[0] }, (_, n) => ({ dims: im.dims.slice(1), data: im.data.subarray(n * per, (n + 1) * per) }));
    }
    return [im];
  }
  if (!Array.isArray(images)) throw new InputError(`images of type ${repr(images)}; expected an image {data, dims}, ImageData, or a list of them`);
  if (!images.length) throw new InputError('no images given; expected at least one');
  return images.map((im, i) => {
    const out = one(im);
    if (!out || !out.dims || !out.data) throw new InputError(`image ${i} is not an image; expected {data, dims}, ImageData or a canvas`);
    return out;
  });
}

// Images -> the (N, C, S, S) float32 pixel_values the bundle reads.
export function pixelValues(manifest, location, images, layout = 'HWC', resize = false) {
  if (!LAYOUTS.includes(layout)) throw new InputError(`layout ${repr(layout)}; expected one of: ${LAYOUTS.join(', ')}`);
  const [side, channels] = imageGeometry(manifest, location);
  const list = imageList(images, channels).map((im, i) => {
    let chw = toCHW(im, i, isBrowserImage(images) || isBrowserImage(im) ? 'HWC' : layout, channels);
    if (chw.dims[1] !== side || chw.dims[2] !== side) {
      if (!resize) {
        throw new InputError(`image ${i} is ${chw.dims[1]}x${chw.dims[2]} (HxW); this model reads ${side}x${side} `
          + 'images (pass resize=True, or --resize, to resize it)');
      }
      chw = resizeBilinear(chw, side);
    }
    return chw.data.map((v) => (v - PIXEL_MEAN) / PIXEL_STD);
  });
  const per = channels * side * side, out = tensor('float32', [list.length, channels, side, side]);
  list.forEach((d, n) => out.data.set(d, n * per));
  return out;
}

export async function classifyImages(model, images, { layout = 'HWC', resize = false, batchSize = 64 } = {}) {
  const pixels = pixelValues(model.manifest, model.location, images, layout, resize);
  const [N, ...rest] = pixels.dims, per = product(rest), probabilities = [];
  for (let start = 0; start < N; start += batchSize) {
    const n = Math.min(batchSize, N - start);
    const chunk = tensor('float32', [n, ...rest], pixels.data.subarray(start * per, (start + n) * per));
    const out = await model.runTensors({ pixel_values: chunk });
    probabilities.push(...rowsOf(out.logits).map(softmax));
  }
  const L = probabilities[0].length;
  const names = model.manifest.model.labels ?? Array.from({ length: L }, (_, i) => String(i));
  const { labels, probabilities: p, labelNames } = labelled(probabilities, names, []);
  return { labels, probabilities: p, labelNames };
}
