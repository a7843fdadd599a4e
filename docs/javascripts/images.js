// Result figures are about 1944 px wide and shown at the text's width: make every image of a page that is
// not already a link open at full size in a new tab (styled by stylesheets/extra.css, a.image-full-size).
function linkImagesToFullSize() {
  document.querySelectorAll(".md-content .md-typeset img").forEach((img) => {
    if (img.closest("a") || img.naturalWidth && img.naturalWidth <= img.clientWidth) {
      return;
    }
    const link = document.createElement("a");
    link.href = img.currentSrc || img.src;
    link.target = "_blank";
    link.rel = "noopener";
    link.className = "image-full-size";
    link.title = "Open the figure at full size";
    img.parentNode.insertBefore(link, img);
    link.appendChild(img);
  });
}

// Material's instant navigation swaps pages without a reload: link each new page's figures.
if (typeof document$ !== "undefined") {
  document$.subscribe(linkImagesToFullSize);
} else {
  document.addEventListener("DOMContentLoaded", linkImagesToFullSize);
}
