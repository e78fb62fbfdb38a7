// Extends (never replaces) the MathJax object that myst-nb sets. The widget manager typesets
// widget labels with MathJax 2's MathJax.Hub.Queue; MathJax 3 has no Hub, so give it one.
window.MathJax = window.MathJax || {};
MathJax.startup = Object.assign(MathJax.startup || {}, { ready() {
  MathJax.startup.defaultReady();
  MathJax.Hub = { Queue(...jobs) { for (const j of jobs)
    if (Array.isArray(j) && j[0] === "Typeset" && j[2]) MathJax.typesetPromise([j[2]]); } };
} });
