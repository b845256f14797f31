/* Search results: drop the TeX source of equations from the snippets.
 *
 * Sphinx builds a result's snippet from the page's HTML, where an equation is still its TeX
 * source (MathJax typesets it only when the page itself is shown), so a snippet read
 * "\frac{\partial h_T}{...}". Before Sphinx's search starts, wrap its htmlToText so that every
 * equation is replaced by an ellipsis.
 */
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined" || typeof Search.htmlToText !== "function") return;
  const htmlToText = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => {
    const doc = new DOMParser().parseFromString(htmlString, "text/html");
    doc.querySelectorAll(".math, mjx-container, .MathJax").forEach((el) => {
      el.replaceWith(doc.createTextNode(" … "));
    });
    return htmlToText(doc.documentElement.outerHTML, anchor);
  };
});
