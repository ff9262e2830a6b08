// The report's tables, offline: a click on a column's heading (or Enter on it) sorts its rows, again
// to reverse; rows with nothing to sort by (a submission that was not graded) stay last. A filter box
// (<input data-filter="table id">) shows the rows that hold every word typed. Links to formgrader
// follow the Jupyter server that serves this page (…/files/…), else keep the base written in them.
document.querySelectorAll("table.sortable").forEach(table => {
  const heads = [...table.tHead.rows[0].cells];
  const value = (row, column) => {
    const cell = row.cells[column];
    return cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
  };
  heads.forEach((head, column) => {
    head.tabIndex = 0;
    head.title = "sort by " + head.textContent.trim();
    const sort = () => {
      const up = head.getAttribute("aria-sort") !== "ascending";
      heads.forEach(other => other.removeAttribute("aria-sort"));
      head.setAttribute("aria-sort", up ? "ascending" : "descending");
      const numeric = head.dataset.type === "number";
      const rows = [...table.tBodies[0].rows];
      rows.sort((a, b) => {
        const x = value(a, column), y = value(b, column);
        if (x === "" || y === "") return (x === "") - (y === "");
        const order = numeric ? Number(x) - Number(y) : x.localeCompare(y, undefined, {numeric: true});
        return up ? order : -order;
      });
      table.tBodies[0].append(...rows);
    };
    head.addEventListener("click", sort);
    head.addEventListener("keydown", event => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); }
    });
  });
});
document.querySelectorAll("input[data-filter]").forEach(input => {
  const table = document.getElementById(input.dataset.filter);
  const count = document.getElementById(input.dataset.filter + "-shown");
  input.addEventListener("input", () => {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of table.tBodies[0].rows) {
      row.hidden = !words.every(word => row.textContent.toLowerCase().includes(word));
      shown += row.hidden ? 0 : 1;
    }
    if (count) count.textContent = shown + " of " + table.tBodies[0].rows.length + " rows shown";
  });
});
const served = location.pathname.indexOf("/files/");
if (location.protocol.startsWith("http") && served >= 0) {
  const base = location.origin + location.pathname.slice(0, served);
  document.querySelectorAll("a[data-formgrader]").forEach(link => { link.href = base + link.dataset.formgrader; });
}
