/* Photos on the phone: downscale before upload, keep the capture time and place.
 *
 *   ggw.photos.prepare(file) -> Promise<{blob, width, height, resized}>
 *
 * A photo longer than MAX_SIDE pixels is drawn, upright, onto a canvas of at most MAX_SIDE
 * on its long side and re-encoded as JPEG (quality 0.85): a 12-megapixel phone photo of
 * 4–6 MB becomes ~300–600 KB, which is what a weak village signal can carry. The original's
 * EXIF block (capture time, GPS position: evidence the server records) is copied into the
 * new JPEG with its Orientation reset to 1, since the pixels are already upright.
 * A JPEG already small enough is sent as it is.
 */
(function () {
  "use strict";

  var ggw = (window.ggw = window.ggw || {});
  var MAX_SIDE = 1600;
  var QUALITY = 0.85;
  var EXIF_SCAN_BYTES = 256 * 1024;

  function decodeWithImage(file) {
    return new Promise(function (resolve, reject) {
      var url = URL.createObjectURL(file);
      var img = new Image();
      img.onload = function () {
        resolve({ source: img, width: img.naturalWidth, height: img.naturalHeight, done: function () { URL.revokeObjectURL(url); } });
      };
      img.onerror = function () {
        URL.revokeObjectURL(url);
        reject(new Error("无法读取这张照片，请换一张或重新拍摄"));
      };
      img.src = url;
    });
  }

  function decode(file) {
    if (!window.createImageBitmap) return decodeWithImage(file);
    return createImageBitmap(file, { imageOrientation: "from-image" }).then(function (bitmap) {
      return { source: bitmap, width: bitmap.width, height: bitmap.height, done: function () { bitmap.close(); } };
    }, function () { return decodeWithImage(file); });
  }

  function toJpeg(canvas) {
    return new Promise(function (resolve, reject) {
      canvas.toBlob(function (blob) {
        if (blob) resolve(blob); else reject(new Error("照片压缩失败，请重试"));
      }, "image/jpeg", QUALITY);
    });
  }

  function readBytes(blob, length) {
    var part = length ? blob.slice(0, length) : blob;
    if (part.arrayBuffer) return part.arrayBuffer().then(function (b) { return new Uint8Array(b); });
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () { resolve(new Uint8Array(reader.result)); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsArrayBuffer(part);
    });
  }

  /* Return the APP1 "Exif" segment of a JPEG (marker included), or null. */
  function exifSegment(bytes) {
    if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return null;
    var pos = 2;
    while (pos + 4 <= bytes.length && bytes[pos] === 0xff) {
      var marker = bytes[pos + 1];
      if (marker === 0xda || marker === 0xd9) return null; // image data starts: no EXIF
      var length = (bytes[pos + 2] << 8) | bytes[pos + 3];
      if (marker === 0xe1 && pos + 10 <= bytes.length &&
          bytes[pos + 4] === 0x45 && bytes[pos + 5] === 0x78 && bytes[pos + 6] === 0x69 &&
          bytes[pos + 7] === 0x66 && bytes[pos + 8] === 0 && bytes[pos + 9] === 0) {
        if (pos + 2 + length > bytes.length) return null;
        return bytes.slice(pos, pos + 2 + length);
      }
      pos += 2 + length;
    }
    return null;
  }

  /* Set the Orientation tag (0x0112) of IFD0 to 1 (upright) in an APP1 Exif segment. */
  function resetOrientation(segment) {
    try {
      var tiff = 10;
      var view = new DataView(segment.buffer, segment.byteOffset, segment.byteLength);
      var little = view.getUint16(tiff) === 0x4949;
      var ifd = tiff + view.getUint32(tiff + 4, little);
      var count = view.getUint16(ifd, little);
      for (var i = 0; i < count; i++) {
        var entry = ifd + 2 + i * 12;
        if (view.getUint16(entry, little) === 0x0112) view.setUint16(entry + 8, 1, little);
      }
    } catch (err) {
      return null; // malformed EXIF: drop it rather than send a wrong orientation
    }
    return segment;
  }

  /* Insert an Exif segment into a JPEG after SOI (and after JFIF APP0 when present). */
  function withExif(jpeg, segment) {
    return readBytes(jpeg).then(function (bytes) {
      var at = 2;
      if (bytes[2] === 0xff && bytes[3] === 0xe0) at = 4 + ((bytes[4] << 8) | bytes[5]);
      return new Blob([bytes.slice(0, at), segment, bytes.slice(at)], { type: "image/jpeg" });
    });
  }

  function prepare(file) {
    return decode(file).then(function (decoded) {
      var width = decoded.width;
      var height = decoded.height;
      var longSide = Math.max(width, height);
      if (longSide <= MAX_SIDE && file.type === "image/jpeg") {
        decoded.done();
        return { blob: file, width: width, height: height, resized: false };
      }
      var scale = Math.min(1, MAX_SIDE / longSide);
      var canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(width * scale));
      canvas.height = Math.max(1, Math.round(height * scale));
      var ctx = canvas.getContext("2d");
      ctx.fillStyle = "#fff"; // transparent PNG areas become white, not black
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(decoded.source, 0, 0, canvas.width, canvas.height);
      decoded.done();
      var size = { width: canvas.width, height: canvas.height };
      return toJpeg(canvas).then(function (jpeg) {
        canvas.width = canvas.height = 0; // free the bitmap memory on low-end phones
        if (file.type !== "image/jpeg") return jpeg;
        return readBytes(file, EXIF_SCAN_BYTES).then(function (head) {
          var segment = exifSegment(head);
          segment = segment && resetOrientation(segment);
          return segment ? withExif(jpeg, segment) : jpeg;
        }, function () { return jpeg; });
      }).then(function (blob) {
        return { blob: blob, width: size.width, height: size.height, resized: true };
      });
    });
  }

  ggw.photos = { MAX_SIDE: MAX_SIDE, QUALITY: QUALITY, prepare: prepare };
})();
