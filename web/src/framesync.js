// placeholder: the browser client of the hub's protocols (being written)
export const version = 1;
